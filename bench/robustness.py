"""Robustness study: attack x attacker share x partition x defence, over seeds, plus each cell's clean run.

Usage: python -m bench.robustness [--quick | --heterogeneity] [--seeds N] [--clients 10,40]
                                  [--etas 0.2,0.4] [--rounds 10] [--defences D,...] [--vote-rules R,...]
                                  [--reviewers K,...] [--tasks digits,mnist,ltdigits]
                                  [--partitions iid,dirichlet:0.5] [--workers 2] [--json FILE]
                                  [--markdown]

Every run is played by the in-process federation (simulation/inprocess.py): the product's
training, attacks, vote rules and aggregation, with the contract's reference sortition and
settlement. Defences: plain FedAvg and Flower's Krum, Median and TrimmedAvg without governance;
``governed`` (per-update voting with the task's default rule, or each of ``--vote-rules``, named
``governed:RULE``); ``governed_stake`` (the same, stake-weighted votes); ``governed_aggregate``
(the paper's vote on the aggregated candidate). ``--reviewers`` runs each per-update governed
defence once per number of reviewers per update k, named ``governed@kK`` (0: every voter judges
every update); cells then also give the voters' evaluations per round (P x V, or P x k).

Every run plays one task (``--tasks``) with one number of clients (``--clients``); a cell is
(task, clients, attack, voter attack, eta, partition, defence).

Per cell (JSON ``cells``): ``accuracy`` (mean, std over seeds) and ``clean_accuracy`` (the same
defence, partition and seeds without attackers); for governed cells ``recall`` (attacker
updates rejected, rounds >= 2), ``false_rejection`` (honest updates rejected, rounds >= 2),
``attacker_net_wei`` (max over attackers and seeds of stake change + rewards), ``honest_net_wei``
(mean over honest participants and seeds), the collusion figures (share of rounds whose voters
held an attacker majority by count, by stake, next to the hypergeometric odds for the members
still eligible; the share of updates whose reviewers held an attacker majority, next to its
odds; poisoned updates accepted in rounds where attackers were a minority of the voters, and
where honest members were the majority of the update's reviewers), how many attackers ended with a net >= 0 and how
many never proposed, ``honest_ejected`` (honest members whose stake ended below the minimum),
and what the votes did to honest members in the cell's clean runs: ``clean_false_rejection``,
``clean_honest_ejected`` and ``clean_honest_net_min_wei`` (the worst-off honest member).

``--quick``: one seed, eta 0.4, label_flip and sign_flip, digits on iid and dirichlet:0.5 and
ltdigits on dirichlet:0.1, plain FedAvg vs governed (about a minute). ``--heterogeneity``: the
matrix of issue 27, digits, mnist and ltdigits on iid, dirichlet:0.5 and dirichlet:0.1 with 10
and 40 clients, 20 rounds, one seed, Median and governed; label flips, sign flips, ALIE and
colluding label flippers, and lazy (accept_all) and random voters proposing honest updates; plain
FedAvg plays the clean runs only (the "same run without governance" of the clean-run target; no
target reads it under attack). A voter attack is played by the governed defences only. The JSON's
``clean`` lists every defence's clean-run accuracy per place.
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

from fedledger.contracts import sortition
from fedledger.simulation.inprocess import DEFENCES, GOVERNED_DEFENCES, Incentives, RunResult, Scenario, play
from fedledger.simulation.report import Outcome

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
QUICK_GRID: tuple[tuple[str, str], ...] = (
    ("digits", "iid"),
    ("digits", "dirichlet:0.5"),
    ("ltdigits", "dirichlet:0.1"),
)
"""(task, partition) pairs of ``--quick``: balanced and skewed digits, and long-tailed digits dealt very unevenly."""
HETEROGENEITY = {
    "attacks": (
        ("label_flip", "honest"),
        ("sign_flip", "honest"),
        ("alie", "honest"),
        ("label_flip", "collude"),
        ("none", "accept_all"),
        ("none", "random"),
    ),
    "tasks": ("digits", "mnist", "ltdigits"),
    "partitions": ("iid", "dirichlet:0.5", "dirichlet:0.1"),
    "clients": (10, 40),
    "rounds": 20,
    "seeds": 1,
    "defences": ("fedavg", "median", "governed"),
    "clean_only": ("fedavg",),
}
"""``--heterogeneity``: where real federations live (issue 27's targets)."""
ORDER = ATTACKS + VOTER_ATTACKS
PLAIN_COLUMNS = (("fedavg", "FedAvg"), ("krum", "Krum"), ("median", "Median"), ("trimmed_mean", "TrimmedAvg"))


class Cell(BaseModel):
    """One row of the study's JSON."""

    task: str
    clients: int
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
    attacker_voter_majority_odds: float | None = None
    attacker_reviewer_majority_items: float | None = None
    attacker_reviewer_majority_odds: float | None = None
    attacker_updates_accepted_with_honest_reviewers: int | None = None
    evaluations_per_round: float | None = None
    honest_ejected: int | None = None
    clean_false_rejection: float | None = None
    clean_honest_ejected: int | None = None
    clean_honest_undecided: float | None = None
    honest_undecided: float | None = None
    attacker_undecided: float | None = None
    clean_honest_net_min_wei: int | None = None
    wall_s: float


def parse_defence(defence: str) -> tuple[str, str | None, int | None]:
    """``NAME[:RULE][@kK]`` -> (name, vote rule or None, reviewers per update or None)."""
    head, _, reviewers = defence.partition("@k")
    name, _, rule = head.partition(":")
    return name, rule or None, int(reviewers) if reviewers else None


def _scenario(defence: str, canary_rate_bps: int | None = None, **fields: Any) -> Scenario:
    """A scenario for ``defence`` (``governed:RULE`` picks a vote rule, ``@kK`` the reviewers per update).

    ``canary_rate_bps`` replaces the task default's canary rate (contracts/canary.py).
    """
    name, rule, reviewers = parse_defence(defence)
    incentives: dict[str, int] = {}
    if reviewers is not None:
        incentives["reviewers_per_update"] = reviewers
    if canary_rate_bps is not None:
        incentives["canary_rate_bps"] = canary_rate_bps
    if incentives:
        fields["incentives"] = Incentives(**incentives)
    return Scenario(defence=name, **({"vote_rule": rule} if rule else {}), **fields)


Grid = tuple[tuple[str, int, str], ...]
"""(task, clients, partition) triples a study plays."""


def grid(tasks: tuple[str, ...], clients: tuple[int, ...], partitions: tuple[str, ...]) -> Grid:
    """Every (task, clients, partition) combination, but ``iid`` of a task that never deals IID.

    ``ltdigits`` deals by Dirichlet whatever it is asked; its ``iid`` would repeat its default alpha.
    """
    from fedledger.simulation.tasks import get_task

    dealt = {t: get_task(t).deals_iid for t in tasks}
    return tuple((t, n, p) for t in tasks for n in clients for p in partitions if dealt[t] or p != "iid")


def _votes(defence: str) -> bool:
    return parse_defence(defence)[0] in GOVERNED_DEFENCES


def scenarios(
    quick: bool,
    seeds: int,
    where: Grid,
    rounds: int,
    defences: tuple[str, ...],
    attacks: tuple[tuple[str, str], ...] | None = None,
    canary_rate_bps: int | None = None,
    etas: tuple[float, ...] | None = None,
    clean_only: tuple[str, ...] = (),
) -> tuple[list[tuple[tuple[Any, ...], Scenario]], list[tuple[tuple[Any, ...], Scenario]]]:
    """(attacked runs, clean runs) over ``where``, keyed by cell; ``attacks`` and ``etas`` replace the matrix's.

    Defences in ``clean_only`` play the clean runs only (a baseline no target reads under attack).
    """
    chosen = attacks
    attacks = attacks or (QUICK_ATTACKS if quick else ATTACKS)
    etas = etas or ((0.4,) if quick else ETAS)
    seed_list = range(1 if quick else seeds)

    def run(task: str, clients: int, partition: str, defence: str, seed: int, **attack: Any) -> Scenario:
        place = {"task": task, "clients": clients, "partition": partition}
        return _scenario(defence, canary_rate_bps, rounds=rounds, seed=seed, **place, **attack)

    # A voter attack means nothing without votes: plain defences play the update attacks only.
    matrix = [(a, v, d) for a, v in attacks for d in defences if (v == "honest" or _votes(d)) and d not in clean_only]
    if not quick and chosen is None:
        matrix += [
            (a, v, d) for a, v in VOTER_ATTACKS for d in defences if _votes(d) and d != "governed_aggregate"
        ]  # fmt: skip
    attacked = [
        (
            (task, clients, attack, voter, eta, partition, defence),
            run(task, clients, partition, defence, seed,
                attackers=round(eta * clients), attack=attack, voter_attack=voter),
        )
        for attack, voter, defence in matrix for eta in etas for task, clients, partition in where
        for seed in seed_list
    ]  # fmt: skip
    clean = [
        ((task, clients, partition, defence), run(task, clients, partition, defence, seed))
        for task, clients, partition in where
        for defence in defences
        for seed in seed_list
    ]
    return attacked, clean


def clean_accuracies(clean: list[tuple[tuple[Any, ...], RunResult]]) -> list[dict[str, Any]]:
    """Every defence's mean final accuracy without attackers, per (task, clients, partition): the baselines."""
    runs: dict[tuple[Any, ...], list[float]] = {}
    for key, result in clean:
        runs.setdefault(key, []).append(result.accuracy)
    return [
        {"task": t, "clients": n, "partition": p, "defence": d, "accuracy": round(statistics.fmean(a), 4)}
        for (t, n, p, d), a in runs.items()
    ]


def summarise(
    attacked: list[tuple[tuple[Any, ...], RunResult]], clean: list[tuple[tuple[Any, ...], RunResult]]
) -> list[Cell]:
    """One :class:`Cell` per (task, clients, attack, voter attack, eta, partition, defence)."""
    clean_runs: dict[tuple[Any, ...], list[RunResult]] = {}
    for key, result in clean:
        clean_runs.setdefault(key, []).append(result)
    groups: dict[tuple[Any, ...], list[RunResult]] = {}
    for key, result in attacked:
        groups.setdefault(key, []).append(result)
    cells = []
    for (task, clients, attack, voter, eta, partition, defence), results in groups.items():
        accuracies = [r.accuracy for r in results]
        baseline = clean_runs[(task, clients, partition, defence)]
        cell: dict[str, Any] = {
            "task": task,
            "clients": clients,
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
            "clean_accuracy": round(statistics.mean(r.accuracy for r in baseline), 4),
            "wall_s": round(sum(r.wall_s for r in results), 2),
        }
        if results[0].scenario.governed:
            cell |= _governed_figures(results) | _clean_figures(baseline)
        cells.append(Cell(**cell))
    return cells


def honest_ejected(result: RunResult) -> int:
    """Honest members the run ejected (standing, or stake below the task's minimum: no longer drawn)."""
    attackers = set(result.attackers)
    return len({a for o in result.rounds for a in o.ejected if a not in attackers})


def _undecided(results: list[RunResult], honest: bool) -> float | None:
    """Share of the group's committed updates (rounds >= 2) left undecided for want of a quorum."""
    outcomes = [r.outcome(from_round=2) for r in results]
    if honest:
        left, decided = sum(o.honest_undecided for o in outcomes), sum(o.honest_updates for o in outcomes)
    else:
        left, decided = sum(o.attacker_undecided for o in outcomes), sum(o.attacker_updates for o in outcomes)
    return round(left / (left + decided), 4) if left + decided else None


def _false_rejection(outcomes: list[Outcome]) -> float | None:
    """Honest updates rejected / judged over ``outcomes`` (None: none judged)."""
    judged = sum(o.honest_updates for o in outcomes)
    return round(sum(o.honest_rejected for o in outcomes) / judged, 4) if judged else None


def _clean_figures(results: list[RunResult]) -> dict[str, Any]:
    return {
        "clean_false_rejection": _false_rejection([r.outcome(from_round=2) for r in results]),
        "clean_honest_ejected": sum(honest_ejected(r) for r in results),
        "clean_honest_undecided": _undecided(results, honest=True),
        "clean_honest_net_min_wei": min((m.net_wei for r in results for m in r.money), default=None),
    }


def _collusion(results: list[RunResult]) -> dict[str, Any]:
    """Attacker majorities among a round's voters and among each update's reviewers, measured and expected.

    The odds are the hypergeometric tail (:func:`sortition.majority_odds`) for the members still
    eligible when the round opened: V voters from M members, an update's k reviewers from the M - 1
    members other than its proposer. Per-update rounds only for the reviewer figures.
    """
    voter_odds: list[float] = []
    majority_items = item_odds = 0.0
    items = honest_accepts = 0
    for r in results:
        attackers = set(r.attackers)
        out: set[str] = set()
        members = r.scenario.clients
        per_update = r.scenario.defence != "governed_aggregate"
        for o in r.rounds:
            eligible, bad = members - len(out), len(attackers - out)
            out |= set(o.ejected)
            if not o.voters:
                continue
            voter_odds.append(sortition.majority_odds(eligible, bad, len(o.voters)))
            if not per_update:
                continue
            k = sortition.effective_reviewers(
                r.scenario.incentives.reviewers_per_update, len(o.proposers), len(o.voters)
            )
            for i, proposer in enumerate(o.proposers):
                if proposer in o.missing:
                    continue
                seats = sortition.reviewers_of(i, len(o.proposers), len(o.voters), k)
                against = sum(1 for j in seats if o.voters[j] in attackers)
                items += 1
                majority_items += 2 * against > len(seats)
                item_odds += sortition.majority_odds(eligible - 1, bad - (proposer in attackers), len(seats))
                poisoned = r.scenario.attack != "none" and proposer in attackers
                honest_accepts += poisoned and proposer in o.accepted and 2 * against < len(seats)
    return {
        "attacker_voter_majority_odds": round(statistics.mean(voter_odds), 4) if voter_odds else None,
        "attacker_reviewer_majority_items": round(majority_items / items, 4) if items else None,
        "attacker_reviewer_majority_odds": round(item_odds / items, 4) if items else None,
        "attacker_updates_accepted_with_honest_reviewers": honest_accepts if items else None,
    }


def _governed_figures(results: list[RunResult]) -> dict[str, Any]:
    outcomes = [r.outcome(from_round=2) for r in results]
    caught = sum(o.attacker_rejected for o in outcomes)
    judged = sum(o.attacker_updates for o in outcomes)
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
        "false_rejection": _false_rejection(outcomes),
        "attacker_net_wei": max((m.net_wei for m in attackers), default=None),
        "attacker_net_mean_wei": (sum(m.net_wei for m in attackers) // len(attackers)) if attackers else None,
        "honest_net_wei": (sum(m.net_wei for m in honest_money) // len(honest_money)) if honest_money else None,
        "attackers_with_net_at_least_zero": sum(1 for m in attackers if m.net_wei >= 0),
        "attackers_never_proposed": sum(1 for m in attackers if m.proposed == 0),
        "attacker_voter_majority_rounds": round(len(majority) / len(rounds), 4) if rounds else None,
        "attacker_voter_stake_majority_rounds": round(len(stake_majority) / len(rounds), 4) if rounds else None,
        "attacker_updates_accepted_in_minority_rounds": minority_accepts,
        "evaluations_per_round": round(statistics.mean(o.evaluations for _, o in rounds), 2) if rounds else None,
        "honest_ejected": sum(honest_ejected(r) for r in results),
        "honest_undecided": _undecided(results, honest=True),
        "attacker_undecided": _undecided(results, honest=False),
        **_collusion(results),
    }


def _play(scenario: Scenario) -> RunResult:
    return play(scenario)


TASK_COST = {"mnist": 6.0}
"""Seconds of a run relative to digits with as many clients (measured: a CNN against a 64-64-10 MLP)."""


def _cost(scenario: Scenario) -> float:
    """A run's expected time up to a constant: clients x rounds x task x (voting triples the work)."""
    votes = 3.0 if scenario.governed else 1.0
    return scenario.clients * scenario.rounds * TASK_COST.get(scenario.task, 1.0) * votes


def _play_all(every: list[Scenario], workers: int) -> list[RunResult]:
    """Every run's result, in order; the longest runs start first so no worker idles at the end."""
    if workers <= 1:
        return [_play(s) for s in every]
    order = sorted(range(len(every)), key=lambda i: -_cost(every[i]))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        done = dict(zip(order, pool.imap(_play, [every[i] for i in order], chunksize=1), strict=True))
    return [done[i] for i in range(len(every))]


def run_study(
    quick: bool = False,
    seeds: int = 3,
    clients: tuple[int, ...] = (10,),
    rounds: int = 10,
    workers: int = 2,
    defences: tuple[str, ...] | None = None,
    attacks: tuple[tuple[str, str], ...] | None = None,
    tasks: tuple[str, ...] = ("digits",),
    partitions: tuple[str, ...] = PARTITIONS,
    where: Grid | None = None,
    canary_rate_bps: int | None = None,
    etas: tuple[float, ...] | None = None,
    clean_only: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Play every run (in ``workers`` processes) and summarise; ``where`` replaces tasks x clients x partitions.

    ``canary_rate_bps`` replaces the task default's canary rate in every governed run; defences in
    ``clean_only`` play no attacked run.
    """
    started = time.monotonic()
    defences = defences or (("fedavg", "governed") if quick else DEFENCES)
    where = where or grid(tasks, clients, partitions)
    attacked, clean = scenarios(quick, seeds, where, rounds, defences, attacks, canary_rate_bps, etas, clean_only)
    every = [s for _, s in attacked] + [s for _, s in clean]
    results = _play_all(every, workers)
    done_attacked = [(key, r) for (key, _), r in zip(attacked, results[: len(attacked)], strict=True)]
    done_clean = [(key, r) for (key, _), r in zip(clean, results[len(attacked) :], strict=True)]
    return {
        "quick": quick,
        "tasks": sorted({t for t, _, _ in where}),
        "partitions": sorted({p for _, _, p in where}),
        "clients": sorted({n for _, n, _ in where}),
        "grid": [list(w) for w in where],
        "rounds": rounds,
        "canary_rate_bps": every[0].incentives.canary_rate_bps if every else canary_rate_bps,
        "defences": list(defences),
        "clean_only": list(clean_only),
        "runs": len(every),
        "wall_s": round(time.monotonic() - started, 1),
        "cells": [c.model_dump() for c in summarise(done_attacked, done_clean)],
        "clean": clean_accuracies(done_clean),
    }


def _eth(wei: int | None) -> str:
    return "-" if wei is None else f"{wei / 10**18:+.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _row_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    task, clients, attack, voter, eta, partition = key
    return (
        ORDER.index((attack, voter)) if (attack, voter) in ORDER else len(ORDER),
        attack,
        eta,
        task,
        clients,
        PARTITIONS.index(partition) if partition in PARTITIONS else len(PARTITIONS),
        partition,
    )


def markdown(study: dict[str, Any]) -> str:
    """The study as markdown: accuracy per defence per cell, the governed defences' votes and money, clean runs."""
    cells = study["cells"]
    index = {
        (c["task"], c["clients"], c["attack"], c["voter_attack"], c["eta"], c["partition"], c["defence"]): c
        for c in cells
    }
    rows = sorted({k[:6] for k in index}, key=_row_order)
    defences = study["defences"]
    plain = [(d, label) for d, label in PLAIN_COLUMNS if d in defences]
    governed = [d for d in defences if d.startswith("governed")]
    reference = governed[0] if governed else defences[0]
    head = ["task", "clients", "attack", "eta", "partition", *(label for _, label in plain), *governed]
    head.append(f"clean ({reference})")
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|---:|---|" + "---:|" * (len(head) - 5)]

    def lead(key: tuple[Any, ...]) -> str:
        task, clients, attack, voter, eta, partition = key
        name = attack + ("" if voter == "honest" else f" + {voter}")
        return f"| {task} | {clients} | {name} | {eta} | {partition} | "

    for key in rows:
        accuracy = [
            f"{index[(*key, d)]['accuracy']['mean']:.3f}" if (*key, d) in index else "-"
            for d in [d for d, _ in plain] + governed
        ]
        clean = index.get((*key, reference))
        clean_text = f"{clean['clean_accuracy']:.3f}" if clean else "-"
        lines.append(lead(key) + " | ".join(accuracy) + f" | {clean_text} |")
    lines += [
        "",
        "| task | clients | attack | eta | partition | defence | recall | false rej. | attacker net max |"
        " attacker net mean | honest net mean | honest ejected |",
        "|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in rows:
        for d in governed:
            c = index.get((*key, d))
            if c is None:
                continue
            lines.append(
                lead(key) + f"{d} | {_pct(c['recall'])} | {_pct(c['false_rejection'])} | "
                f"{_eth(c['attacker_net_wei'])} | {_eth(c['attacker_net_mean_wei'])} | {_eth(c['honest_net_wei'])} | "
                f"{c['honest_ejected']} |"
            )
    collusion = [
        (key, d, index[(*key, d)]) for key in rows for d in governed if (*key, d) in index and key[3] != "honest"
    ]
    if collusion:
        lines += [
            "",
            "| task | clients | attack | eta | partition | defence | voters: attacker majority, rounds / odds |"
            " an update's reviewers: attacker majority / odds | attacker updates accepted, honest reviewer majority |",
            "|---|---:|---|---:|---|---|---:|---:|---:|",
        ]
        for key, d, c in collusion:
            lines.append(
                lead(key) + f"{d} | {_pct(c['attacker_voter_majority_rounds'])} / "
                f"{_pct(c['attacker_voter_majority_odds'])} | {_pct(c['attacker_reviewer_majority_items'])} / "
                f"{_pct(c['attacker_reviewer_majority_odds'])} | "
                f"{c['attacker_updates_accepted_with_honest_reviewers']} |"
            )
    clean_rows = {
        (c["task"], c["clients"], c["partition"], c["defence"]): c
        for c in cells
        if c["clean_false_rejection"] is not None
    }
    if clean_rows:
        plain_clean = {(c["task"], c["clients"], c["partition"], c["defence"]): c["accuracy"] for c in study["clean"]}
        lines += [
            "",
            "| clean run: task | clients | partition | defence | accuracy | FedAvg (no governance) | honest rejected |"
            " honest ejected | worst honest net |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for (task, clients, partition, d), c in sorted(clean_rows.items(), key=lambda kv: kv[0]):
            fedavg = plain_clean.get((task, clients, partition, "fedavg"))
            lines.append(
                f"| {task} | {clients} | {partition} | {d} | {c['clean_accuracy']:.3f} | "
                f"{'-' if fedavg is None else f'{fedavg:.3f}'} | {_pct(c['clean_false_rejection'])} | "
                f"{c['clean_honest_ejected']} | {_eth(c['clean_honest_net_min_wei'])} |"
            )
    return "\n".join(lines)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    """Run the study; print JSON (or markdown) and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one seed, eta 0.4, two attacks, FedAvg vs governed")
    mode.add_argument("--heterogeneity", action="store_true", help="issue 27's matrix of tasks, partitions, clients")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--etas", help="comma-separated attacker shares (default 0.2,0.4; --quick 0.4)")
    parser.add_argument("--clients", help="comma-separated numbers of clients (default 10)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--defences", help=f"comma-separated subset of {', '.join(DEFENCES)}")
    parser.add_argument("--vote-rules", help="run the governed defence once per rule: governed:RULE (e.g. share,full)")
    parser.add_argument(
        "--reviewers", help="run each per-update governed defence once per k reviewers per update: governed@kK (0,2,3)"
    )
    parser.add_argument(
        "--attacks", help="replace the attack matrix: ATTACK[+VOTER_ATTACK],... (e.g. noise:0.1,noise:0.5,none+collude)"
    )
    parser.add_argument(
        "--tasks", "--task", dest="tasks", help="comma-separated tasks every cell is played on (default digits)"
    )
    parser.add_argument("--partitions", help=f"comma-separated partitions (default {','.join(PARTITIONS)})")
    parser.add_argument(
        "--canary-rate-bps",
        type=int,
        help="chance that a proposal owes a canary, bps (default: the task default, off; docs/voting.md 'Canaries')",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2: this machine's cores)")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the study here")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables instead of JSON")
    args = parser.parse_args(argv)
    preset: dict[str, Any] = HETEROGENEITY if args.heterogeneity else {}
    seeds = args.seeds if args.seeds is not None else preset.get("seeds", 3)
    rounds = args.rounds if args.rounds is not None else preset.get("rounds", 10)
    if seeds < 1 or rounds < 1 or args.workers < 1:
        parser.error("--seeds, --rounds and --workers must be at least 1")
    if args.canary_rate_bps is not None and not 0 <= args.canary_rate_bps <= 10_000:
        parser.error(f"--canary-rate-bps must lie in 0..10000, got {args.canary_rate_bps}")
    try:
        etas = tuple(float(e) for e in _names(args.etas)) if args.etas else None
    except ValueError:
        parser.error(f"--etas takes comma-separated attacker shares, e.g. 0.3,0.4; got {args.etas!r}")
    if etas and any(not 0 < e < 1 for e in etas):
        parser.error(f"--etas must lie strictly between 0 and 1, got {args.etas}")
    try:
        clients = tuple(int(n) for n in _names(args.clients)) if args.clients else preset.get("clients", (10,))
    except ValueError:
        parser.error(f"--clients takes comma-separated integers, e.g. 10,40; got {args.clients!r}")
    if not clients or any(n < 2 for n in clients):
        parser.error("--clients must be at least 2")
    defences = _names(args.defences) if args.defences else preset.get("defences")
    if defences and (unknown := [d for d in defences if parse_defence(d)[0] not in DEFENCES]):
        parser.error(f"unknown defence {unknown[0]!r}; use {', '.join(DEFENCES)}")
    if args.vote_rules:
        from fedledger.client.voting import RULES

        rules = _names(args.vote_rules)
        if unknown := [r for r in rules if r not in RULES]:
            parser.error(f"unknown vote rule {unknown[0]!r}; use {', '.join(RULES)}")
        others = tuple(d for d in (defences or DEFENCES) if d != "governed")
        defences = others + tuple(f"governed:{r}" for r in rules)
    if args.reviewers:
        try:
            ks = [int(k) for k in _names(args.reviewers)]
        except ValueError:
            parser.error("--reviewers takes comma-separated integers, e.g. 0,2,3")
        if any(k < 0 for k in ks):
            parser.error("--reviewers must be 0 or more")
        base = defences or DEFENCES
        per_update = [d for d in base if parse_defence(d)[0] in ("governed", "governed_stake")]
        defences = tuple(d for d in base if d not in per_update) + tuple(f"{d}@k{k}" for d in per_update for k in ks)
    attacks = preset.get("attacks")
    if args.attacks:
        from fedledger.simulation.attacks import parse_attack, parse_voter_attack

        pairs = [(a.partition("+")[0].strip(), a.partition("+")[2].strip() or "honest") for a in _names(args.attacks)]
        try:
            for attack, voter in pairs:
                parse_attack(attack), parse_voter_attack(voter)
        except ValueError as exc:
            parser.error(str(exc))
        attacks = tuple(pairs)
    from fedledger.simulation.partition import parse_partitioning
    from fedledger.simulation.tasks import task_names

    tasks = _names(args.tasks) if args.tasks else preset.get("tasks", ("digits",))
    if unknown := [t for t in tasks if t not in task_names()]:
        parser.error(f"unknown task {unknown[0]!r}; use one of {', '.join(task_names())}")
    partitions = _names(args.partitions) if args.partitions else preset.get("partitions", PARTITIONS)
    try:
        for partition in partitions:
            parse_partitioning(partition)
    except ValueError as exc:
        parser.error(str(exc))
    chosen_grid = args.tasks or args.partitions or args.clients
    where = tuple((t, clients[0], p) for t, p in QUICK_GRID) if args.quick and not chosen_grid else None
    study = run_study(
        args.quick,
        seeds,
        clients,
        rounds,
        args.workers,
        defences,
        attacks,
        tasks,
        partitions,
        where=where,
        canary_rate_bps=args.canary_rate_bps,
        etas=etas,
        clean_only=preset.get("clean_only", ()) if not args.defences else (),
    )
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(study, indent=1) + "\n", encoding="utf-8")
    print(markdown(study) if args.markdown else json.dumps(study, indent=1))
    print(f"{study['runs']} runs in {study['wall_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
