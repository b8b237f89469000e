"""Plots of a run: accuracy per round, balance of honest vs attacker participants, votes per round."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from fedledger.server.coordinator.results import RoundResult

from .report import Report

ETH = 10**18


def plot_run(report: Report, rounds: list[RoundResult], out: Path) -> list[Path]:
    """Write accuracy.png, balance.png and votes.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [_accuracy(report, out / "accuracy.png")]
    if report.governance:
        paths.append(_balances(report, rounds, out / "balance.png"))
        paths.append(_votes(report, out / "votes.png"))
    return paths


def _accuracy(report: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [0, *(r.round for r in report.rounds)]
    ys = [
        report.initial.get("accuracy", float("nan")),
        *(r.metrics.get("accuracy", float("nan")) for r in report.rounds),
    ]
    ax.plot(xs, ys, marker="o")
    for r in report.rounds:
        if r.accepted is False:
            ax.axvline(r.round, color="tab:red", alpha=0.2)
    ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title=f"{report.strategy}: accuracy per round")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def balance_series(report: Report, rounds: list[RoundResult]) -> dict[str, list[float]]:
    """Per participant, its balance in ETH before round 1 and after each round: stake + rewards credited.

    The paper plots token balances; the stake alone would hide what a participant earned.
    """
    series = {}
    for p in report.participants:
        points = [p.stake_start_wei / ETH]
        for r in rounds:
            stake = r.stakes.get(p.address, p.stake_start_wei)
            points.append((stake + r.credited.get(p.address, 0)) / ETH)
        series[p.address] = points
    return series


def _balances(report: Report, rounds: list[RoundResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    honest = {p.address: p.honest for p in report.participants}
    for address, points in balance_series(report, rounds).items():
        color = "tab:blue" if honest[address] else "tab:red"
        ax.plot(range(len(points)), points, color=color, alpha=0.7, marker=".")
    ax.plot([], [], color="tab:blue", label="honest")
    ax.plot([], [], color="tab:red", label="attacker")
    ax.set(xlabel="round", ylabel="stake + rewards credited (ETH)", title="balance per participant")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _votes(report: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r.round for r in report.rounds]
    bars = {
        "honest accepted": (
            [len(r.accepted_proposers) - len(r.attackers_accepted) for r in report.rounds],
            "tab:green",
        ),
        "honest rejected": ([len(r.rejected) - len(r.attackers_rejected) for r in report.rounds], "tab:orange"),
        "attacker rejected": ([len(r.attackers_rejected) for r in report.rounds], "tab:red"),
        "attacker accepted": ([len(r.attackers_accepted) for r in report.rounds], "tab:purple"),
    }
    bottom = [0] * len(xs)
    for label, (heights, color) in bars.items():
        ax.bar(xs, heights, bottom=bottom, label=label, color=color)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set(xlabel="round", ylabel="proposers", title=f"votes per round ({report.vote_mode}, {report.vote_rule})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
