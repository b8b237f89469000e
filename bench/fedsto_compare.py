"""FedSTO against its baselines on one detdigits federation: same data, seeds and warm-up.

Usage: python -m bench.fedsto_compare [--seed 0] [--clients 3] [--rounds 20] [--json FILE]

Runs in one process with the strategy's own client and server functions (the code a governed
run calls, without chain and Flower messaging) and prints mean mAP@0.5 over the client domains
(and per domain) of:

- server-only: the warm-up model (supervised on the server's labeled clear canvases);
- naive SSL FedAvg: pseudo-label training of all parameters from round 1, no SRIP
  (``selective_rounds=0, srip_weight=0``), the same server step;
- FedSTO: the default configuration (phase 1 for T1 rounds, then phase 2 with SRIP);
- fully supervised: centralised supervised training on the server's and every client's
  canvases *with* their boxes (an upper bound: the federation's clients have no boxes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from fedledger.aggregation.base import Arrays
from fedledger.aggregation.fedsto import FedSTOConfig, FedSTOStrategy
from fedledger.client.participant import round_seed
from fedledger.simulation.glyphs import DOMAINS
from fedledger.simulation.tasks import TrainSettings, get_task
from fedledger.simulation.tasks.detdigits import DetDigitsTask, DetectionSplit, fit_supervised


def federate(plugin: FedSTOStrategy, task: DetDigitsTask, seed: int, clients: int, rounds: int) -> Arrays:
    """``rounds`` rounds in which every client trains and the server aggregates; the final state."""
    state = plugin.initial_state(task, seed)
    data = [task.client_data(k, clients, "iid", seed) for k in range(clients)]
    private: list[dict[str, Arrays]] = [{} for _ in range(clients)]
    for r in range(1, rounds + 1):
        updates = []
        for k in range(clients):
            settings = TrainSettings(seed=round_seed(seed, r, k), round=r)
            update, _ = plugin.client_update(task, seed, state, data[k], settings, private[k])
            updates.append((update, len(data[k].train)))
        state = plugin.server_update(task, seed, r, plugin.aggregate(None, r, state, updates))
    return state


def fully_supervised(
    task: DetDigitsTask, seed: int, clients: int, epochs: int, config: FedSTOConfig
) -> torch.nn.Module:
    """Centralised supervised training on the server's canvases and every client's, with their boxes."""
    parts = [task.server_data(seed)] + [task.labeled_client_data(k, seed)[0] for k in range(clients)]
    pooled = DetectionSplit(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.domain for p in parts]),
    )
    model = task.build_model(seed)
    settings = TrainSettings(local_epochs=epochs, lr=config.lr, batch_size=config.batch_size, seed=seed)
    fit_supervised(model, pooled, settings)
    return model


def measure(seed: int, clients: int, rounds: int, supervised_epochs: int) -> dict[str, dict[str, float]]:
    """Metrics of each variant on the test canvases of every domain, with wall times."""
    torch.set_num_threads(1)
    task = get_task("detdigits")
    assert isinstance(task, DetDigitsTask)
    test = task.test_data(seed)
    fedsto = FedSTOStrategy()
    naive = FedSTOStrategy(FedSTOConfig(selective_rounds=0, srip_weight=0.0))
    results: dict[str, dict[str, float]] = {}

    started = time.monotonic()
    warm = fedsto.initial_state(task, seed)
    results["server-only (warm-up)"] = task.evaluate(fedsto.build(task, seed, warm), test)
    results["server-only (warm-up)"]["wall_s"] = time.monotonic() - started
    for label, plugin in (("naive SSL FedAvg", naive), ("FedSTO", fedsto)):
        started = time.monotonic()
        state = federate(plugin, task, seed, clients, rounds)
        results[label] = task.evaluate(plugin.build(task, seed, state), test) | {"wall_s": time.monotonic() - started}
    started = time.monotonic()
    model = fully_supervised(task, seed, clients, supervised_epochs, fedsto.config)
    results["fully supervised"] = task.evaluate(model, test) | {"wall_s": time.monotonic() - started}
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print (and optionally save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--supervised-epochs", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.seed, args.clients, args.rounds, args.supervised_epochs)
    table = Table(title=f"detdigits, {args.clients} clients, {args.rounds} rounds, seed {args.seed}: mAP@0.5")
    columns = ["map50", *(f"map50_{d}" for d in DOMAINS), "wall_s"]
    table.add_column("variant")
    for column in columns:
        table.add_column("mean (clients)" if column == "map50" else column.removeprefix("map50_"), justify="right")
    for label, metrics in results.items():
        table.add_row(label, *(f"{metrics[c]:.3f}" if c != "wall_s" else f"{metrics[c]:.0f}" for c in columns))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
