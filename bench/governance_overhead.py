"""Wall time per round with governance vs plain Flower (--no-governance), same seed, one invocation.

Usage: python -m bench.governance_overhead [--seed 1] [--clients 10] [--rounds 5]

Both runs use the same strategy, clients, partition and share of training nodes per round;
the governed one adds sortition, update commitments through the gateway, commit-reveal voting
and settlement on the embedded chain. Prints JSON with the mean round wall time of each and
their ratio (rounds after the first, whose time includes starting the simulation's actors).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from fedledger.simulation.runner import Simulation, SimulationOptions


def measure(seed: int, clients: int, rounds: int) -> dict[str, object]:
    """Run both configurations and compare their round times."""
    base = Path(tempfile.mkdtemp(prefix="fedledger-overhead-"))
    results = {}
    for governance in (True, False):
        options = SimulationOptions(seed=seed, clients=clients, rounds=rounds, governance=governance)
        options = options.model_copy(update={"out": base / ("governed" if governance else "plain")})
        report = Simulation(options).run()
        walls = [r.wall_s for r in report.rounds]
        results["governed" if governance else "plain"] = {
            "round_wall_s": walls,
            "mean_round_wall_s": round(statistics.mean(walls[1:] or walls), 3),
            "total_wall_s": report.wall_s,
            "final_accuracy": round(report.final["accuracy"], 4),
        }
    governed, plain = results["governed"], results["plain"]
    results["ratio_mean_round_wall"] = round(governed["mean_round_wall_s"] / plain["mean_round_wall_s"], 2)  # type: ignore[index]
    results["ratio_total_wall"] = round(governed["total_wall_s"] / plain["total_wall_s"], 2)  # type: ignore[index]
    results["runs"] = str(base)
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seed, args.clients, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
