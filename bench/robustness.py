"""Robustness study: attack x attacker share x partition x defence, over seeds, plus each cell's clean run.

Usage: python -m bench.robustness [--quick] [--seeds N] [--clients 10] [--rounds 10]
                                  [--defences D,...] [--vote-rules R,...] [--reviewers K,...]
                                  [--task digits] [--partitions iid,dirichlet:0.5]
                                  [--workers 2] [--json FILE] [--markdown]

Every run is played by the in-process federation (simulation/inprocess.py): the product's
training, attacks, vote rules and aggregation, with the contract's reference sortition and
settlement. Defences: plain FedAvg and Flower's Krum, Median and TrimmedAvg without governance;
``governed`` (per-update voting with the task's default rule, or each of ``--vote-rules``, named
``governed:RULE``); ``governed_stake`` (the same, stake-weighted votes); ``governed_aggregate``
(the paper's vote on the aggregated candidate). ``--reviewers`` runs each per-update governed
defence once per number of reviewers per update k, named ``governed@kK`` (0: every voter judges
every update); cells then also give the voters' evaluations per round (P x V, or P x k).

Per cell (JSON ``cells``): ``accuracy`` (mean, std over seeds) and ``clean_accuracy`` (the same
defence, partition and seeds without attackers); for governed cells ``recall`` (attacker
updates rejected, rounds >= 2), ``false_rejection`` (honest updates rejected, rounds >= 2),
``attacker_net_wei`` (max over attackers and seeds of stake change + rewards), ``honest_net_wei``
(mean over honest participants and seeds), the collusion figures (share of rounds whose voters
held an attacker majority by count, by stake; attacker updates accepted in rounds where
attackers were a minority of the voters) and how many attackers ended with a net >= 0 and how
many never proposed.

``--quick``: one seed, eta 0.4, label_flip and sign_flip, iid and dirichlet:0.5, plain FedAvg
vs governed (seconds).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fedledger.simulation.inprocess import DEFENCES, Incentives, RunResult, Scenario, play

ATTACKS: tuple[tuple[str, str], ...] = (
    ("label_flip", "honest"),
    ("sign_flip", "honest"),
    ("noise:0.5", "honest"),
    ("free_ride", "honest"),
    ("alie", "honest"),
    ("label_flip", "collude"),
)
"""(update attack, voter attack) pairs. noise:0.5 is the smallest of 0.05/0.1/0.2/0.5 that lowers plain
FedAvg's accuracy on digits (docs/voting.md)."""
VOTER_ATTACKS: tuple[tuple[str, str], ...] = tuple(
    (attack, voter)
    for voter in ("random", "invert", "accept_all", "no_reveal", "collude")
    for attack in ("none", "label_flip")
    if (attack, voter) != ("label_flip", "collude")
)
"""Voter attacks beyond the matrix, governed defences only: alone (honest updates) and with label flips."""
ETAS = (0.2, 0.4)
PARTITIONS = ("iid", "dirichlet:0.5")
QUICK_ATTACKS = (("label_flip", "honest"), ("sign_flip", "honest"))
ORDER = ATTACKS + VOTER_ATTACKS
PLAIN_COLUMNS = (("fedavg", "FedAvg"), ("krum", "Krum"), ("median", "Median"), ("trimmed_mean", "TrimmedAvg"))


class Cell(BaseModel):
    """One row of the study's JSON."""

    attack: str
    voter_attack: str
    eta: float
    partition: str
    defence: str
    seeds: list[int]
    accuracy: dict[str, float]
    clean_accuracy: float
    recall: float | None = None
    false_rejection: float | None = None
    attacker_net_wei: int | None = None
    attacker_net_mean_wei: int | None = None
    honest_net_wei: int | None = None
    attackers_with_net_at_least_zero: int | None = None
    attackers_never_proposed: int | None = None
    attacker_voter_majority_rounds: float | None = None
    attacker_voter_stake_majority_rounds: float | None = None
    attacker_updates_accepted_in_minority_rounds: int | None = None
    evaluations_per_round: float | None = None
    wall_s: float


def parse_defence(defence: str) -> tuple[str, str | None, int | None]:
    """``NAME[:RULE][@kK]`` -> (name, vote rule or None, reviewers per update or None)."""
    head, _, reviewers = defence.partition("@k")
    name, _, rule = head.partition(":")
    return name, rule or None, int(reviewers) if reviewers else None


def _scenario(defence: str, **fields: Any) -> Scenario:
    """A scenario for ``defence`` (``governed:RULE`` picks a vote rule, ``@kK`` the reviewers per update)."""
    name, rule, reviewers = parse_defence(defence)
    if reviewers is not None:
        fields["incentives"] = Incentives(reviewers_per_update=reviewers)
    return Scenario(defence=name, **({"vote_rule": rule} if rule else {}), **fields)


def scenarios(
    quick: bool,
    seeds: int,
    clients: int,
    rounds: int,
    defences: tuple[str, ...],
    attacks: tuple[tuple[str, str], ...] | None = None,
    task: str = "digits",
    partitions: tuple[str, ...] = PARTITIONS,
) -> tuple[list[tuple[tuple[Any, ...], Scenario]], list[tuple[tuple[Any, ...], Scenario]]]:
    """(attacked runs, clean runs) of ``task``, each keyed by its cell; ``attacks`` replaces the matrix's."""
    chosen = attacks
    attacks = attacks or (QUICK_ATTACKS if quick else ATTACKS)
    etas = (0.4,) if quick else ETAS
    seed_list = range(1 if quick else seeds)
    attacked = [
        (
            (attack, voter, eta, partition, defence),
            _scenario(
                defence, task=task, clients=clients, rounds=rounds, partition=partition,
                attackers=round(eta * clients), attack=attack, voter_attack=voter, seed=seed,
            ),
        )
        for attack, voter in attacks for eta in etas for partition in partitions for defence in defences
        for seed in seed_list
    ]  # fmt: skip
    if not quick and chosen is None:
        attacked += [
            (
                (attack, voter, eta, partition, defence),
                _scenario(
                    defence, task=task, clients=clients, rounds=rounds, partition=partition,
                    attackers=round(eta * clients), attack=attack, voter_attack=voter, seed=seed,
                ),
            )
            for attack, voter in VOTER_ATTACKS for eta in etas for partition in partitions
            for defence in defences if defence.startswith("governed") and defence != "governed_aggregate"
            for seed in seed_list
        ]  # fmt: skip
    clean = [
        (
            (partition, defence),
            _scenario(defence, task=task, clients=clients, rounds=rounds, partition=partition, seed=seed),
        )
        for partition in partitions
        for defence in defences
        for seed in seed_list
    ]
    return attacked, clean


def summarise(
    attacked: list[tuple[tuple[Any, ...], RunResult]], clean: list[tuple[tuple[Any, ...], RunResult]]
) -> list[Cell]:
    """One :class:`Cell` per (attack, voter attack, eta, partition, defence)."""
    clean_accuracy: dict[tuple[Any, ...], list[float]] = {}
    for key, result in clean:
        clean_accuracy.setdefault(key, []).append(result.accuracy)
    groups: dict[tuple[Any, ...], list[RunResult]] = {}
    for key, result in attacked:
        groups.setdefault(key, []).append(result)
    cells = []
    for (attack, voter, eta, partition, defence), results in groups.items():
        accuracies = [r.accuracy for r in results]
        cell: dict[str, Any] = {
            "attack": attack,
            "voter_attack": voter,
            "eta": eta,
            "partition": partition,
            "defence": defence,
            "seeds": [r.scenario.seed for r in results],
            "accuracy": {
                "mean": round(statistics.mean(accuracies), 4),
                "std": round(statistics.pstdev(accuracies), 4),
            },
            "clean_accuracy": round(statistics.mean(clean_accuracy[(partition, defence)]), 4),
            "wall_s": round(sum(r.wall_s for r in results), 2),
        }
        if results[0].scenario.governed:
            cell |= _governed_figures(results)
        cells.append(Cell(**cell))
    return cells


def _governed_figures(results: list[RunResult]) -> dict[str, Any]:
    outcomes = [r.outcome(from_round=2) for r in results]
    caught = sum(o.attacker_rejected for o in outcomes)
    judged = sum(o.attacker_updates for o in outcomes)
    wrong = sum(o.honest_rejected for o in outcomes)
    honest = sum(o.honest_updates for o in outcomes)
    attackers = [m for r in results for m in r.money if not m.honest]
    honest_money = [m for r in results for m in r.money if m.honest]
    rounds = [(r, o) for r in results for o in r.rounds]
    majority = [o for _, o in rounds if 2 * o.attacker_voters > len(o.voters)]
    stake_majority = [o for _, o in rounds if 2 * o.attacker_voter_stake_bps > 10_000]
    minority_accepts = sum(
        1
        for r, o in rounds
        if 2 * o.attacker_voters < len(o.voters) and r.scenario.attack != "none"
        for a in o.accepted
        if a in r.attackers
    )
    return {
        "recall": round(caught / judged, 4) if judged else None,
        "false_rejection": round(wrong / honest, 4) if honest else None,
        "attacker_net_wei": max((m.net_wei for m in attackers), default=None),
        "attacker_net_mean_wei": (sum(m.net_wei for m in attackers) // len(attackers)) if attackers else None,
        "honest_net_wei": (sum(m.net_wei for m in honest_money) // len(honest_money)) if honest_money else None,
        "attackers_with_net_at_least_zero": sum(1 for m in attackers if m.net_wei >= 0),
        "attackers_never_proposed": sum(1 for m in attackers if m.proposed == 0),
        "attacker_voter_majority_rounds": round(len(majority) / len(rounds), 4) if rounds else None,
        "attacker_voter_stake_majority_rounds": round(len(stake_majority) / len(rounds), 4) if rounds else None,
        "attacker_updates_accepted_in_minority_rounds": minority_accepts,
        "evaluations_per_round": round(statistics.mean(o.evaluations for _, o in rounds), 2) if rounds else None,
    }


def _play(scenario: Scenario) -> RunResult:
    return play(scenario)


def run_study(
    quick: bool = False,
    seeds: int = 3,
    clients: int = 10,
    rounds: int = 10,
    workers: int = 2,
    defences: tuple[str, ...] | None = None,
    attacks: tuple[tuple[str, str], ...] | None = None,
    task: str = "digits",
    partitions: tuple[str, ...] = PARTITIONS,
) -> dict[str, Any]:
    """Play every run (in ``workers`` processes) and summarise."""
    started = time.monotonic()
    defences = defences or (("fedavg", "governed") if quick else DEFENCES)
    attacked, clean = scenarios(quick, seeds, clients, rounds, defences, attacks, task, partitions)
    every = [s for _, s in attacked] + [s for _, s in clean]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_play, every, chunksize=1)
    else:
        results = [_play(s) for s in every]
    done_attacked = [(key, r) for (key, _), r in zip(attacked, results[: len(attacked)], strict=True)]
    done_clean = [(key, r) for (key, _), r in zip(clean, results[len(attacked) :], strict=True)]
    return {
        "quick": quick,
        "task": task,
        "partitions": list(partitions),
        "clients": clients,
        "rounds": rounds,
        "defences": list(defences),
        "runs": len(every),
        "wall_s": round(time.monotonic() - started, 1),
        "cells": [c.model_dump() for c in summarise(done_attacked, done_clean)],
    }


def _eth(wei: int | None) -> str:
    return "-" if wei is None else f"{wei / 10**18:+.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def markdown(study: dict[str, Any]) -> str:
    """The study as markdown: accuracy per defence per cell, then the governed defences' votes and money."""
    cells = study["cells"]
    index = {(c["attack"], c["voter_attack"], c["eta"], c["partition"], c["defence"]): c for c in cells}
    rows = sorted(
        {k[:4] for k in index},
        key=lambda k: (
            ORDER.index(k[:2]) if k[:2] in ORDER else len(ORDER),
            k[0],
            k[2],
            (PARTITIONS.index(k[3]) if k[3] in PARTITIONS else len(PARTITIONS)),
        ),
    )
    defences = study["defences"]
    plain = [(d, label) for d, label in PLAIN_COLUMNS if d in defences]
    governed = [d for d in defences if d.startswith("governed")]
    reference = governed[0] if governed else defences[0]
    head = ["attack", "eta", "partition", *(label for _, label in plain), *governed, f"clean ({reference})"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|" + "---:|" * (len(head) - 3)]
    for key in rows:
        attack = key[0] + ("" if key[1] == "honest" else f" + {key[1]}")
        accuracy = [
            f"{index[(*key, d)]['accuracy']['mean']:.3f}" if (*key, d) in index else "-"
            for d in [d for d, _ in plain] + governed
        ]
        clean = index.get((*key, reference))
        clean_text = f"{clean['clean_accuracy']:.3f}" if clean else "-"
        lines.append(f"| {attack} | {key[2]} | {key[3]} | " + " | ".join(accuracy) + f" | {clean_text} |")
    lines += [
        "",
        "| attack | eta | partition | defence | recall | false rej. | attacker net max | attacker net mean |"
        " honest net mean |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in rows:
        attack = key[0] + ("" if key[1] == "honest" else f" + {key[1]}")
        for d in governed:
            c = index.get((*key, d))
            if c is None:
                continue
            lines.append(
                f"| {attack} | {key[2]} | {key[3]} | {d} | {_pct(c['recall'])} | {_pct(c['false_rejection'])} | "
                f"{_eth(c['attacker_net_wei'])} | {_eth(c['attacker_net_mean_wei'])} | {_eth(c['honest_net_wei'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the study; print JSON (or markdown) and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, eta 0.4, two attacks, FedAvg vs governed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--defences", help=f"comma-separated subset of {', '.join(DEFENCES)}")
    parser.add_argument("--vote-rules", help="run the governed defence once per rule: governed:RULE (e.g. share,full)")
    parser.add_argument(
        "--reviewers", help="run each per-update governed defence once per k reviewers per update: governed@kK (0,2,3)"
    )
    parser.add_argument(
        "--attacks", help="replace the attack matrix: ATTACK[+VOTER_ATTACK],... (e.g. noise:0.1,noise:0.5,none+collude)"
    )
    parser.add_argument(
        "--task", default="digits", help="the task every run plays (default %(default)s; e.g. ltdigits)"
    )
    parser.add_argument(
        "--partitions", default=",".join(PARTITIONS), help="comma-separated partitions (default %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2: this machine's cores)")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the study here")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables instead of JSON")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.clients < 2 or args.rounds < 1 or args.workers < 1:
        parser.error("--seeds, --rounds and --workers must be at least 1, --clients at least 2")
    defences = tuple(d.strip() for d in args.defences.split(",")) if args.defences else None
    if defences and (unknown := [d for d in defences if parse_defence(d)[0] not in DEFENCES]):
        parser.error(f"unknown defence {unknown[0]!r}; use {', '.join(DEFENCES)}")
    if args.vote_rules:
        from fedledger.client.voting import RULES

        rules = [r.strip() for r in args.vote_rules.split(",")]
        if unknown := [r for r in rules if r not in RULES]:
            parser.error(f"unknown vote rule {unknown[0]!r}; use {', '.join(RULES)}")
        others = tuple(d for d in (defences or DEFENCES) if d != "governed")
        defences = others + tuple(f"governed:{r}" for r in rules)
    if args.reviewers:
        try:
            ks = [int(k) for k in args.reviewers.split(",")]
        except ValueError:
            parser.error("--reviewers takes comma-separated integers, e.g. 0,2,3")
        if any(k < 0 for k in ks):
            parser.error("--reviewers must be 0 or more")
        base = defences or DEFENCES
        per_update = [d for d in base if parse_defence(d)[0] in ("governed", "governed_stake")]
        defences = tuple(d for d in base if d not in per_update) + tuple(f"{d}@k{k}" for d in per_update for k in ks)
    attacks = None
    if args.attacks:
        from fedledger.simulation.attacks import parse_attack, parse_voter_attack

        pairs = [
            (a.partition("+")[0].strip(), a.partition("+")[2].strip() or "honest") for a in args.attacks.split(",")
        ]
        try:
            for attack, voter in pairs:
                parse_attack(attack), parse_voter_attack(voter)
        except ValueError as exc:
            parser.error(str(exc))
        attacks = tuple(pairs)
    from fedledger.simulation.partition import parse_partitioning
    from fedledger.simulation.tasks import task_names

    if args.task not in task_names():
        parser.error(f"unknown task {args.task!r}; use one of {', '.join(task_names())}")
    partitions = tuple(p.strip() for p in args.partitions.split(","))
    try:
        for partition in partitions:
            parse_partitioning(partition)
    except ValueError as exc:
        parser.error(str(exc))
    study = run_study(
        args.quick, args.seeds, args.clients, args.rounds, args.workers, defences, attacks, args.task, partitions
    )
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(study, indent=1) + "\n", encoding="utf-8")
    print(markdown(study) if args.markdown else json.dumps(study, indent=1))
    print(f"{study['runs']} runs in {study['wall_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
