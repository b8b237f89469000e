"""Wall time per round with governance vs plain Flower (--no-governance), same seed, one invocation.

Usage: python -m bench.governance_overhead [--seed 1] [--clients 10] [--rounds 5] [--task T] [--chain URL]
                                          [--json FILE] [--quick]

Both runs use the same strategy, clients, partition and share of training nodes per round;
the governed one adds sortition, update commitments through the gateway, commit-reveal voting
and settlement on the embedded chain. Prints JSON with the mean round wall time of each and
their ratio (rounds after the first, whose time includes starting the simulation's actors).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench import emit
from fedledger.deploy.anvil import AnvilNode
from fedledger.simulation.runner import Simulation, SimulationOptions


def measure(
    seed: int, clients: int, rounds: int, task: str | None = None, chain: str | None = None
) -> dict[str, object]:
    """Run both configurations and compare their round times."""
    base = Path(tempfile.mkdtemp(prefix="fedledger-overhead-"))
    results: dict[str, object] = {"clients": clients, "rounds": rounds, "task": task or "digits"}
    results["chain"] = chain or "embedded"
    extra = {"task": task} if task else {}
    for governance in (True, False):
        chain_options = {"chain": chain} if chain and governance else {}
        options = SimulationOptions(
            seed=seed, clients=clients, rounds=rounds, governance=governance, **extra, **chain_options
        )
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
    g, p = governed["mean_round_wall_s"], plain["mean_round_wall_s"]  # type: ignore[index]
    results["governed_mean_round_s"] = g
    results["plain_mean_round_s"] = p
    results["overhead_s_per_round"] = round(g - p, 3)
    results["ratio_mean_round_wall"] = round(g / p, 2)
    results["ratio_total_wall"] = round(governed["total_wall_s"] / plain["total_wall_s"], 2)  # type: ignore[index]
    results["runs"] = str(base)
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--task", default=None, help="the simulation's task (default: the strategy's, digits)")
    parser.add_argument(
        "--chain", default=None, help="governed run's chain: a JSON-RPC URL, or anvil (started here); default embedded"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 4 clients (CI)")
    args = parser.parse_args(argv)
    clients, rounds = (4, 3) if args.quick else (args.clients, args.rounds)
    if args.chain == "anvil":  # an anvil of our own, stopped afterwards
        with AnvilNode(accounts=clients + 1) as node:
            figures = measure(args.seed, clients, rounds, args.task, node.url)
        figures["chain"] = "anvil"
    else:
        figures = measure(args.seed, clients, rounds, args.task, args.chain)
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
