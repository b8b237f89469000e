"""Plots of a run: accuracy per round, stake of honest vs attacker participants, votes per round."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from fedledger.server.results import RoundResult

from .report import Report

ETH = 10**18


def plot_run(report: Report, rounds: list[RoundResult], out: Path) -> list[Path]:
    """Write accuracy.png, stakes.png and votes.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [_accuracy(report, out / "accuracy.png")]
    if report.governance:
        paths.append(_stakes(report, rounds, out / "stakes.png"))
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


def _stakes(report: Report, rounds: list[RoundResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    start = {p.address: p.stake_start_wei for p in report.participants}
    honest = {p.address: p.honest for p in report.participants}
    for address, stake0 in start.items():
        series = [stake0 / ETH, *(r.stakes.get(address, stake0) / ETH for r in rounds)]
        color = "tab:blue" if honest[address] else "tab:red"
        ax.plot(range(len(series)), series, color=color, alpha=0.7)
    ax.plot([], [], color="tab:blue", label="honest")
    ax.plot([], [], color="tab:red", label="attacker")
    ax.set(xlabel="round", ylabel="stake (ETH)", title="stake per participant")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _votes(report: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r.round for r in report.rounds]
    accepted = [len(r.proposers) - len(r.rejected) for r in report.rounds]
    rejected = [len(r.rejected) for r in report.rounds]
    ax.bar(xs, accepted, label="proposers accepted", color="tab:green")
    ax.bar(xs, rejected, bottom=accepted, label="proposers rejected", color="tab:red")
    ax.set(xlabel="round", ylabel="proposers", title=f"votes per round ({report.vote_mode})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
