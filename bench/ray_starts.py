"""Start-up reliability: N consecutive ``fedledger simulate --rounds 1`` runs, and how each one started.

Usage: python -m bench.ray_starts [--runs 50] [--clients 10] [--json FILE] [--quick]

Counts the runs that failed, the starts of the run's own Ray head that failed and were tried
again (simulation/ray_head.py), and the Flower runs started again because Ray failed inside
Flower (the older path, still there for ``--ray-address`` clusters). Also reports how long each
run took until its nodes were bound (start-up) and in all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import emit
from fedledger.simulation.runner import Simulation, SimulationOptions


def measure(runs: int, clients: int) -> dict[str, object]:
    """Run the starts one after the other; return the counts and times."""
    base = Path(tempfile.mkdtemp(prefix="fedledger-starts-"))
    failed: list[str] = []
    head_retries = flower_retries = 0
    startup: list[float] = []
    walls: list[float] = []
    for i in range(runs):
        events: list[dict] = []
        options = SimulationOptions(rounds=1, clients=clients, seed=i, out=base / f"run-{i}")
        simulation = Simulation(options, on_event=events.append)
        started = time.monotonic()
        try:
            simulation.run()
        except Exception as exc:  # a failed start is what this counts
            failed.append(f"run {i}: {type(exc).__name__}: {str(exc)[:300]}")
        walls.append(round(time.monotonic() - started, 2))
        head_retries += simulation.ray_start_failures
        flower_retries += sum(1 for e in events if e.get("phase") == "Ray did not start; starting the run again")
        bound = _bound_at(base / f"run-{i}" / "server" / "progress.jsonl")
        if bound is not None:
            startup.append(bound)
        print(f"run {i + 1}/{runs}: {walls[-1]} s, nodes bound at {bound} s", file=sys.stderr, flush=True)
    return {
        "runs": runs,
        "clients": clients,
        "failed_runs": len(failed),
        "failures": failed,
        "ray_head_retries": head_retries,
        "flower_ray_retries": flower_retries,
        "mean_nodes_bound_s": round(statistics.mean(startup), 2) if startup else None,
        "max_nodes_bound_s": max(startup) if startup else None,
        "mean_run_wall_s": round(statistics.mean(walls), 2),
        "max_run_wall_s": max(walls),
        "runs_dir": str(base),
    }


def _bound_at(progress: Path) -> float | None:
    """Seconds from the ServerApp's start until its nodes were bound."""
    if not progress.is_file():
        return None
    for line in progress.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("phase") == "nodes bound":
            return float(event["t"])
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON; with --quick, fail unless every run succeeded."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    parser.add_argument("--quick", action="store_true", help="3 runs of 4 clients (CI)")
    args = parser.parse_args(argv)
    runs, clients = (3, 4) if args.quick else (args.runs, args.clients)
    figures = measure(runs, clients)
    emit(figures, args.json)
    return 1 if figures["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
