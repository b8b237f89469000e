"""A live round against a simulated one with the same settings, side by side.

Usage: python -m bench.live_round [--nodes 3] [--rounds 3] [--json FILE]

Live: the commands of docs/live-federation.md on 127.0.0.1 (anvil via ``chain up``, ``deploy``,
``gateway serve --rpc-url``, ``coordinate``, one ``node join`` per node: a SuperNode with the
node agent, which starts a fresh ClientApp process per message). Simulated: ``fedledger
simulate`` with the same nodes, rounds and local epochs (the embedded chain, Ray actors).
Prints the mean round wall time of each (rounds after the first), their ratio, and each
phase's mean duration from the coordinator's ``progress.jsonl``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench import emit
from fedledger.deploy.anvil import free_port
from fedledger.keys import create_keystore
from fedledger.processes import MARKER_ENV, ManagedProcess, kill_marked, new_marker
from fedledger.simulation.runner import Simulation, SimulationOptions

PASSWORD = "bench password"


def phases(progress: Path, first: int = 2) -> tuple[list[float], dict[str, float]]:
    """Round walls (from each round's first event to its 'done') and mean phase durations, rounds >= ``first``."""
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    walls: dict[int, list[float]] = defaultdict(list)
    spans: dict[str, list[float]] = defaultdict(list)
    for event, following in itertools.pairwise(events):
        r = int(event["round"])
        if r < first:
            continue
        walls[r].append(float(event["t"]))
        if event["phase"] == "done":
            continue
        spans[event["phase"]].append(float(following["t"]) - float(event["t"]))
    done = {int(e["round"]): float(e["t"]) for e in events if e["phase"] == "done"}
    round_walls = [round(done[r] - min(ts), 3) for r, ts in sorted(walls.items()) if r in done]
    return round_walls, {p: round(statistics.mean(v), 3) for p, v in spans.items()}


def live(root: Path, nodes: int, rounds: int) -> Path:
    """Run the live federation; return the coordinator's run folder."""
    env = dict(os.environ, FEDLEDGER_KEY_PASSWORD=PASSWORD, FLWR_HOME=str(root / "flwr-home"))
    processes: list[tuple[ManagedProcess, str]] = []

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "fedledger.cli", *args], env=env, cwd=root, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"fedledger {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def start(name: str, *args: str) -> ManagedProcess:
        marker = new_marker()
        command = [sys.executable, "-m", "fedledger.cli", *args]
        process = ManagedProcess(name, command, root / "logs" / f"{name}.log", env | {MARKER_ENV: marker}, cwd=root)
        processes.append((process, marker))
        return process

    rpc, gateway, superlink = free_port(), free_port(), free_port()
    out = root / "live"
    try:
        url = run("chain", "up", "--port", str(rpc), "--state", "chain-state.json").strip()
        keystores = [f"keys/{n}.json" for n in ["coordinator", *(f"node-{i}" for i in range(nodes))]]
        for keystore in keystores:
            create_keystore(root / keystore, PASSWORD)
        run("chain", "fund", "--rpc-url", url, *keystores)
        run(
            "deploy", "--rpc-url", url, "--key-file", keystores[0], "--out", "deployments/local.json",
            "--initial-model", "digits:0", "--rounds", str(rounds), "--max-committee", str(nodes), "--pool", "5",
        )  # fmt: skip
        start(
            "gateway", "gateway", "serve", "--rpc-url", url, "--deployment", "deployments/local.json",
            "--relayer-key-file", keystores[0], "--port", str(gateway), "--flush-window", "1",
        )  # fmt: skip
        start(
            "coordinator", "coordinate", "--gateway", f"127.0.0.1:{gateway}", "--keystore", keystores[0],
            "--nodes", str(nodes), "--local-epochs", "1", "--port", str(superlink), "--out", str(out),
        )  # fmt: skip
        for i in range(nodes):
            start(
                f"node-{i}", "node", "join", "--gateway", f"127.0.0.1:{gateway}", "--superlink",
                f"127.0.0.1:{superlink}", "--keystore", keystores[i + 1], "--data", f"digits:{i}/{nodes}",
            )  # fmt: skip
        coordinator = processes[1][0]
        if coordinator.wait(timeout=1800) != 0:
            raise RuntimeError(f"the coordinator failed:\n{coordinator.tail(30)}")
        return out
    finally:
        for process, marker in reversed(processes):
            process.stop()
            kill_marked(marker)
        subprocess.run([sys.executable, "-m", "fedledger.cli", "chain", "down"], env=env, cwd=root, check=False)


def measure(nodes: int, rounds: int) -> dict[str, object]:
    """Both runs, and the comparison."""
    root = Path(tempfile.mkdtemp(prefix="fedledger-live-round-"))
    started = time.monotonic()
    live_walls, live_phases = phases(live(root, nodes, rounds) / "server" / "progress.jsonl")
    live_total = round(time.monotonic() - started, 1)
    options = SimulationOptions(clients=nodes, rounds=rounds, local_epochs=1, out=root / "sim")
    Simulation(options).run()
    sim_walls, sim_phases = phases(root / "sim" / "server" / "progress.jsonl")
    live_round, sim_round = statistics.mean(live_walls), statistics.mean(sim_walls)
    return {
        "nodes": nodes,
        "rounds": rounds,
        "live_round_s": round(live_round, 3),
        "sim_round_s": round(sim_round, 3),
        "ratio": round(live_round / sim_round, 2),
        "live_round_walls_s": live_walls,
        "sim_round_walls_s": sim_walls,
        "live_phases_s": live_phases,
        "sim_phases_s": sim_phases,
        "live_command_wall_s": live_total,
        "runs": str(root),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    args = parser.parse_args(argv)
    figures = measure(args.nodes, args.rounds)
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
