"""``fedledger simulate``: the main job."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedledger.processes import interrupt_on_terminate
from fedledger.tables import fitted_table

if TYPE_CHECKING:  # the runner imports Flower and torch: only when a run starts
    from .runner import SimulationOptions

console = Console()

UPDATE_ATTACKS = ("none", "label_flip", "scale:FACTOR", "sign_flip", "noise:SIGMA", "free_ride", "alie", "silent")
VOTER_ATTACKS = ("honest", "random", "invert", "accept_all", "no_reveal", "collude")
DEFAULT_ATTACKER_SHARE = 0.2
DEFAULT_ATTACK = "sign_flip"
"""The default run shows what the votes are for: a fifth of the clients (rounded down: 2 of 10)
send their updates reversed."""
RULE_NAMES = ("share", "full", "loo", "reference")
"""Spelled here for --help (the CLI imports nothing heavy); a test checks them against the modules."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``simulate`` command."""
    cmd = commands.add_parser(
        "simulate",
        help="run a governed federated simulation (gateway, contracts, Flower) on this machine",
        description="Start a gateway with an embedded chain (or use --chain URL), a Flower SuperLink in "
        "simulation mode and N ClientApps, run the rounds, and write report.json, plots and the chain export.",
    )
    cmd.add_argument("--strategy", default="fedavg", help="registered strategy (see `fedledger strategies`)")
    cmd.add_argument(
        "--strategy-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a strategy hyper-parameter, e.g. steps=50 or k=1024 for fedkseed (repeatable)",
    )
    cmd.add_argument("--task", help="task name (default: the strategy's default task: digits, charlm, ...)")
    cmd.add_argument("--clients", type=int, default=10, help="simulated clients (default %(default)s)")
    cmd.add_argument("--rounds", type=int, default=5, help="rounds (default %(default)s)")
    cmd.add_argument("--partition", default="iid", help="iid or dirichlet:ALPHA (default %(default)s)")
    cmd.add_argument(
        "--attackers",
        type=int,
        help="how many clients attack (default: a fifth of them, rounded down, 2 of 10, so that the votes have "
        "someone to catch; 0: a clean run)",
    )
    cmd.add_argument(
        "--attack",
        default=DEFAULT_ATTACK,
        help=f"the attackers' update attack: {', '.join(UPDATE_ATTACKS)} (default %(default)s)",
    )
    cmd.add_argument(
        "--voter-attack", default="honest", help=f"the attackers' voting: {', '.join(VOTER_ATTACKS)} (default honest)"
    )
    cmd.add_argument("--vote-mode", default="per_update", choices=["per_update", "aggregate"])
    cmd.add_argument(
        "--vote-rule",
        help=f"how voters judge each update: {', '.join(RULE_NAMES)} (default: the strategy's, reference for fedavg)",
    )
    cmd.add_argument(
        "--reviewers-per-update",
        type=int,
        metavar="K",
        help="voters assigned to each update (0: every voter judges every update; default: the task default)",
    )
    cmd.add_argument(
        "--quorum",
        type=int,
        help="informed votes an update needs for a verdict (default: the task default, at most the committee allows)",
    )
    cmd.add_argument("--no-governance", action="store_true", help="the same strategy as plain Flower")
    cmd.add_argument("--chain", default="embedded", help="'embedded' (default) or a JSON-RPC URL (e.g. anvil)")
    cmd.add_argument(
        "--ray-address",
        help="attach to a running Ray cluster (HOST:PORT of its head) instead of starting a Ray head on this machine",
    )
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--out", type=Path, help="run folder (default runs/<timestamp>/)")
    cmd.add_argument("--json", type=Path, dest="json_path", help="also write the report here")
    cmd.add_argument("--local-epochs", type=int, default=5, help="local epochs per training round")
    cmd.add_argument("--lr", type=float, default=0.1, help="local learning rate")
    cmd.set_defaults(handler=_simulate)


def options_from(args: argparse.Namespace) -> SimulationOptions:
    """The run ``fedledger simulate ARGS`` asks for (``--attackers 0``: a clean run, whatever the attack)."""
    from .runner import SimulationOptions

    attackers = int(DEFAULT_ATTACKER_SHARE * args.clients) if args.attackers is None else args.attackers
    return SimulationOptions(
        strategy=args.strategy,
        strategy_options=",".join(args.strategy_option),
        task=args.task,
        clients=args.clients,
        rounds=args.rounds,
        partition=args.partition,
        attackers=attackers,
        attack=args.attack if attackers else "",
        voter_attack=args.voter_attack if attackers else "honest",
        vote_mode=args.vote_mode,
        vote_rule=args.vote_rule,
        reviewers_per_update=args.reviewers_per_update,
        quorum=args.quorum,
        governance=not args.no_governance,
        chain=args.chain,
        ray_address=args.ray_address,
        seed=args.seed,
        out=args.out,
        json_path=args.json_path,
        local_epochs=args.local_epochs,
        lr=args.lr,
    )


def _simulate(args: argparse.Namespace) -> int:
    from .runner import Simulation

    options = options_from(args)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("starting", total=options.rounds)

        def on_event(event: dict[str, Any]) -> None:
            round_ = event.get("round")
            phase = event.get("phase", "")
            if phase == "done":
                progress.advance(bar)
                verdict = {True: "[green]accepted[/]", False: "[red]rejected[/]", None: "trained"}[
                    event.get("accepted")
                ]
                accuracy = event.get("accuracy")
                progress.console.print(f"round {round_}: {verdict}, accuracy {accuracy:.4f}")
                return
            where = f"round {round_}: " if round_ else ""
            progress.update(bar, description=f"{where}{phase}")

        simulation = Simulation(options, on_event)
        console.print(f"run folder: {simulation.out}")
        interrupt_on_terminate()  # `kill PID`, or Ctrl-C where a background shell ignored SIGINT
        report = simulation.run()
    _summary(report)
    console.print(f"report: {simulation.out / 'report.json'}")
    plots = sorted(p.name for p in simulation.out.glob("*.png"))
    if plots:
        console.print(f"plots in {simulation.out}: {', '.join(plots)}")
    return 0


def _summary(report: Any) -> None:
    console.print(summary_table(report))
    accuracy, loss = report.final.get("accuracy", float("nan")), report.final.get("loss", float("nan"))
    console.print(f"final accuracy {accuracy:.4f}, loss {loss:.4f}; wall {report.wall_s:.1f} s")
    per_client = [b for r in report.rounds for b in r.client_bytes()]
    if per_client:
        console.print(
            f"bytes per client per round (Flower messages + own gateway calls, both ways): "
            f"mean {sum(per_client) / len(per_client):,.0f}, max {max(per_client):,}"
        )
    if report.governance and report.participants:
        eth = 10**18
        for honest in (True, False):
            group = [p for p in report.participants if p.honest is honest]
            if group:
                change = sum(p.stake_end_wei - p.stake_start_wei for p in group) / eth
                rewarded = sum(p.rewarded_wei for p in group) / eth
                nets = [p.net_wei / eth for p in group]
                label = "honest" if honest else "attackers"
                console.print(
                    f"{label} ({len(group)}): stake change {change:+.4f} ETH, rewarded {rewarded:.4f} ETH, "
                    f"net mean {sum(nets) / len(nets):+.4f} ETH (min {min(nets):+.4f}, max {max(nets):+.4f})"
                )
    outcome = report.outcome
    if outcome is not None and outcome.attacker_updates + outcome.honest_updates:
        rule = "the paper's rule on the aggregate" if report.vote_mode == "aggregate" else report.vote_rule
        console.print(
            f"votes from round {outcome.from_round} ({rule}): "
            f"{_share(outcome.attacker_rejected, outcome.attacker_updates)} attacker updates rejected (recall), "
            f"{_share(outcome.honest_rejected, outcome.honest_updates)} honest updates rejected; "
            f"left undecided: {outcome.attacker_undecided} attacker, {outcome.honest_undecided} honest"
        )


SUMMARY_COLUMNS = ("rnd", "ok", "tally", "prop", "rejected", "acc", "loss", "gas", "s")
SUMMARY_LEGEND = (
    "ok: a new global model adopted · tally: per update · prop: proposers · rejected: their addresses "
    "(A: an attacker) · acc: test accuracy · gas: the round's gas · s: wall seconds"
)


def summary_table(report: Any, console: Console = console) -> Table:
    """One row per round; it folds rather than cuts in a narrow terminal (an attacker's address is marked A:)."""
    attackers = set(report.attackers.addresses)
    numbers = ("rnd", "prop", "acc", "loss", "gas", "s")
    rows = [
        (
            str(r.round),
            "-" if r.accepted is None else ("yes" if r.accepted else "no"),
            " ".join(map(str, r.tally)) if r.tally else "-",
            str(len(r.proposers)),
            " ".join(("A:" if a in attackers else "") + a[:8] for a in r.rejected) or "-",
            f"{r.metrics.get('accuracy', float('nan')):.4f}",
            f"{r.metrics.get('loss', float('nan')):.4f}",
            f"{r.gas_used:,}",
            f"{r.wall_s:.1f}",
        )
        for r in report.rounds
    ]
    title = f"{report.strategy} · governance {'on' if report.governance else 'off'} · seed {report.seed}"
    return fitted_table(title, SUMMARY_COLUMNS, rows, console=console, right=numbers, caption=SUMMARY_LEGEND)


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole}" + (f" ({100 * part / whole:.0f} %)" if whole else "")
