"""FedSTO against its baselines on detdigits federations, over seeds, with ablations of its open details.

Usage: python -m bench.fedsto_compare [--seeds 0 1 2] [--clients 3] [--rounds 20] [--ablations]
       [--variant LABEL:key=value,...] [--workers 2] [--json FILE]

Runs the strategy's own client and server functions (the code a governed run calls, without
chain and Flower messaging), one job per variant and seed in ``--workers`` processes of one
torch thread each, and prints mean mAP@0.5 over the client domains (mean +- std over the seeds,
and per domain) of:

- server-only: the warm-up model (supervised on the server's labeled clear canvases);
- naive SSL FedAvg: pseudo-label training of all parameters from round 1, no SRIP
  (the default configuration with ``selective_rounds=0, srip_weight=0``), the same server step;
- FedSTO: the default configuration (phase 1 for T1 rounds, then phase 2 with SRIP);
- fully supervised: centralised supervised training on the server's and every client's
  canvases *with* their boxes (an upper bound: the federation's clients have no boxes);
- with ``--ablations``, FedSTO with one open detail changed at a time (:data:`ABLATIONS`), and
  with ``--variant``, any configuration of one's own.

``gap closed`` is (variant - server-only) / (fully supervised - server-only), per seed, then
averaged; a variant that changes the server's augmentation is set against the server-only
model and the supervised bound trained with that augmentation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

SERVER_ONLY, NAIVE, FEDSTO, SUPERVISED = "server-only (warm-up)", "naive SSL FedAvg", "FedSTO", "fully supervised"
NAIVE_OVERRIDES: dict[str, Any] = {"selective_rounds": 0, "srip_weight": 0.0}

ABLATIONS: dict[str, dict[str, Any]] = {
    "persistent teacher (no reset)": {"teacher_reset": False},
    "SRIP on neck and head only": {"srip_scope": "neck_head"},
    "SRIP lambda 1e-4": {"srip_weight": 1e-4},
    "SRIP lambda 1e-2": {"srip_weight": 1e-2},
    "no SRIP": {"srip_weight": 0.0},
    "T1 = 0 (no selective rounds)": {"selective_rounds": 0},
    "T1 = 8": {"selective_rounds": 8},
    "thresholds 0.5 / 0.05": {"reliable": 0.5, "uncertain": 0.05},
    "thresholds 0.7 / 0.2": {"reliable": 0.7, "uncertain": 0.2},
    "server epochs 0": {"server_epochs": 0},
    "server epochs 3": {"server_epochs": 3},
    "strong server augmentation": {"server_augment": "strong"},
}
"""One open detail changed at a time (docs/fedsto.md, "Ablations")."""


@dataclass(frozen=True)
class Job:
    """One measurement: ``kind`` is warmup, federate or supervised."""

    label: str
    kind: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    clients: int
    rounds: int
    supervised_epochs: int

    def config(self, base: FedSTOConfig | None = None) -> FedSTOConfig:
        """The configuration this job runs: ``base`` (the defaults) with its overrides."""
        return (base or FedSTOConfig()).model_copy(update=dict(self.overrides))

    @property
    def recipe(self) -> str:
        """The server's augmentation, which decides the baselines this job is set against."""
        return str(dict(self.overrides).get("server_augment", FedSTOConfig().server_augment))


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
    fit_supervised(model, pooled, settings, strong=config.strong_server_augment)
    return model


def run_job(job: Job) -> dict[str, float]:
    """The job's metrics on the test canvases of every domain, with its wall time."""
    torch.set_num_threads(1)
    task = get_task("detdigits")
    assert isinstance(task, DetDigitsTask)
    plugin = FedSTOStrategy(job.config())
    started = time.monotonic()
    if job.kind == "warmup":
        model = plugin.build(task, job.seed, plugin.initial_state(task, job.seed))
    elif job.kind == "federate":
        model = plugin.build(task, job.seed, federate(plugin, task, job.seed, job.clients, job.rounds))
    elif job.kind == "supervised":
        model = fully_supervised(task, job.seed, job.clients, job.supervised_epochs, plugin.config)
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    return task.evaluate(model, task.test_data(job.seed)) | {"wall_s": time.monotonic() - started}


def plan(
    seeds: Iterable[int],
    clients: int,
    rounds: int,
    supervised_epochs: int,
    variants: dict[str, dict[str, Any]],
    naive: bool = True,
) -> list[Job]:
    """The jobs: both baselines for every augmentation recipe in use, naive SSL FedAvg and each variant."""
    jobs: list[Job] = []
    for seed in seeds:
        common = {"seed": seed, "clients": clients, "rounds": rounds, "supervised_epochs": supervised_epochs}
        federated = {FEDSTO: {}} | ({NAIVE: NAIVE_OVERRIDES} if naive else {}) | variants
        recipes = sorted({str(o.get("server_augment", FedSTOConfig().server_augment)) for o in federated.values()})
        for recipe in recipes:
            overrides = () if recipe == FedSTOConfig().server_augment else (("server_augment", recipe),)
            jobs.append(Job(SERVER_ONLY, "warmup", overrides, **common))
            jobs.append(Job(SUPERVISED, "supervised", overrides, **common))
        jobs += [Job(label, "federate", tuple(sorted(o.items())), **common) for label, o in federated.items()]
    return jobs


def run_on(pool: Executor, jobs: list[Job]) -> list[dict[str, float]]:
    """Every job's metrics, in order, on ``pool`` (warm-ups first, so federations find them cached)."""
    warmups = [i for i, job in enumerate(jobs) if job.kind == "warmup"]
    rest = [i for i, job in enumerate(jobs) if job.kind != "warmup"]
    results: dict[int, dict[str, float]] = {}
    for order in (warmups, rest):
        results |= dict(zip(order, pool.map(run_job, [jobs[i] for i in order]), strict=True))
    return [results[i] for i in range(len(jobs))]


def run_all(jobs: list[Job], workers: int) -> list[dict[str, float]]:
    """Every job's metrics, in order; in ``workers`` processes (one: in this process)."""
    if workers <= 1:
        return [run_job(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return run_on(pool, jobs)


def summarise(jobs: list[Job], results: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Rows per variant: mean and std over seeds of every metric, and the gap closed against its baselines."""
    baseline: dict[tuple[str, str, int], float] = {
        (job.label, job.recipe, job.seed): result["map50"]
        for job, result in zip(jobs, results, strict=True)
        if job.kind != "federate"
    }
    grouped: dict[tuple[str, str], list[tuple[Job, dict[str, float]]]] = {}
    for job, result in zip(jobs, results, strict=True):
        key = (job.label, job.recipe if job.kind != "federate" else "")
        grouped.setdefault(key, []).append((job, result))
    rows = []
    for (label, recipe), members in grouped.items():
        row: dict[str, Any] = {"variant": label + (f" ({recipe} augmentation)" if recipe not in ("", "weak") else "")}
        row["overrides"] = dict(members[0][0].overrides)
        row["seeds"] = [job.seed for job, _ in members]
        for metric in members[0][1]:
            values = [result[metric] for _, result in members]
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        gaps = []
        for job, result in members:
            low = baseline[(SERVER_ONLY, job.recipe, job.seed)]
            high = baseline[(SUPERVISED, job.recipe, job.seed)]
            gaps.append((result["map50"] - low) / (high - low))
        row["gap_closed_mean"] = statistics.fmean(gaps)
        row["gap_closed_std"] = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        row["per_seed_gap_closed"] = gaps
        row["per_seed_map50"] = [result["map50"] for _, result in members]
        rows.append(row)
    return rows


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``LABEL:key=value,key=value`` -> (label, overrides), each value checked by FedSTOConfig."""
    label, _, options = text.partition(":")
    if not label or not options:
        raise argparse.ArgumentTypeError(f"a variant is LABEL:key=value[,key=value...], got {text!r}")
    raw = dict(item.split("=", 1) for item in options.split(",") if "=" in item)
    try:
        checked = FedSTOConfig.model_validate(raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"variant {label!r}: {error}") from None
    return label, {key: getattr(checked, key) for key in raw}


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """mean +- std mAP@0.5 (clients), gap closed, per-domain means and wall time per run."""
    table = Table(title=title)
    for column in ("variant", "mAP@0.5 (clients)", "gap closed", *DOMAINS, "wall s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(
            row["variant"],
            f"{row['map50_mean']:.3f} ± {row['map50_std']:.3f}",
            f"{row['gap_closed_mean']:.0%} ± {row['gap_closed_std']:.0%}",
            *(f"{row[f'map50_{d}_mean']:.3f}" for d in DOMAINS),
            f"{row['wall_s_mean']:.0f}",
        )
    Console(width=max(Console().width, 150)).print(table)  # a bench table: never fold its figures


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print (and optionally save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--supervised-epochs", type=int, default=60)
    parser.add_argument("--ablations", action="store_true", help="also every variant of ABLATIONS")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], help="LABEL:key=value,...")
    parser.add_argument("--no-naive", action="store_true", help="leave naive SSL FedAvg out (ablation runs)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    variants = (ABLATIONS if args.ablations else {}) | dict(args.variant)
    jobs = plan(args.seeds, args.clients, args.rounds, args.supervised_epochs, variants, naive=not args.no_naive)
    started = time.monotonic()
    rows = summarise(jobs, run_all(jobs, args.workers))
    seeds = ", ".join(map(str, args.seeds))
    print_table(rows, f"detdigits, {args.clients} clients, {args.rounds} rounds, seeds {seeds}: mAP@0.5")
    print(f"wall time {time.monotonic() - started:.0f} s")
    if args.json:
        payload = {"args": vars(args) | {"json": str(args.json), "variant": [list(v) for v in args.variant]}}
        args.json.write_text(json.dumps(payload | {"rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
