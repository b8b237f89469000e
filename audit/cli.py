"""``fedledger audit``: rounds, votes and payouts from contract queries and logs alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from fedledger.errors import CommandError
from fedledger.tables import eth, fitted_table

if TYPE_CHECKING:  # heavy: imported when a command runs
    from .report import ParticipantReport, RoundDetail, RoundSummary, TaskReport, VerifyReport
    from .source import AuditSource

console = Console()
SOURCES = ("gateway", "rpc_url", "run")


def _add_options(parser: argparse.ArgumentParser, *, after: bool) -> None:
    """The options every ``audit`` query takes, before WHAT (``after`` False) or after it.

    After WHAT they default to "not given" (``SUPPRESS``), so a value given before WHAT stays.
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if after else {}
    flag: dict[str, Any] = {"default": argparse.SUPPRESS} if after else {"default": False}
    group = parser.add_argument_group("where the task is, and how to print (before or after WHAT)")
    group.add_argument("--gateway", help="gateway address host:port", **default)
    group.add_argument("--rpc-url", help="JSON-RPC node (with --deployment): no gateway needed", **default)
    group.add_argument(
        "--run", type=Path, help="a finished `fedledger simulate` run folder (its chain export)", **default
    )
    group.add_argument("--deployment", type=Path, help="deployment manifest (with --rpc-url)", **default)
    group.add_argument("--blob-dir", type=Path, help="with --rpc-url: a gateway's blobs folder to re-hash", **default)
    group.add_argument("--tls-ca", type=Path, help="CA certificate when the gateway uses TLS", **default)
    group.add_argument("--json", action="store_true", help="print JSON (amounts in wei)", **flag)
    group.add_argument("--wei", action="store_true", help="amounts in wei instead of ETH", **flag)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``audit`` command."""
    cmd = commands.add_parser(
        "audit",
        help="audit a task from contract queries and logs",
        description="Read a task's history from the chain (or a gateway's queries) and check it. "
        "Give one of --gateway, --rpc-url (with --deployment) or --run, before or after WHAT.",
    )
    _add_options(cmd, after=False)
    sub = cmd.add_subparsers(title="what to audit", dest="audit_command", metavar="WHAT", required=True)
    queries = [
        sub.add_parser(
            "task", help="the task's parameters: strategy, vote mode and rule, stake, reward and slash rules"
        ),
        sub.add_parser("rounds", help="one line per round"),
    ]
    one = sub.add_parser("round", help="every commitment, vote, reward and slash of a round")
    one.add_argument("number", type=int)
    who = sub.add_parser("participant", help="history and balances of a participant")
    who.add_argument("address", help="its address, or its keystore file (no password needed)")
    queries += [one, who]
    queries.append(
        sub.add_parser("verify", help="re-hash blobs, replay every tally and payout; exit 1 on any disagreement")
    )
    for query in queries:
        _add_options(query, after=True)
    cmd.set_defaults(handler=_audit)


def _source(args: argparse.Namespace) -> AuditSource:
    from .source import ChainSource, GatewaySource, RunSource

    given = [name for name in SOURCES if getattr(args, name, None)]
    if len(given) != 1:
        named = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CommandError(
            "audit reads one task: give one of --gateway, --rpc-url (with --deployment) or --run"
            + (f" (got {named})" if given else "")
        )
    if args.run is not None:
        return RunSource(args.run)
    if args.rpc_url:
        if args.deployment is None:
            raise CommandError("--rpc-url needs --deployment FILE")
        return ChainSource(args.rpc_url, args.deployment, args.blob_dir)
    from fedledger.server.gateway.client import GatewayClient

    root = args.tls_ca.read_bytes() if args.tls_ca else None
    return GatewaySource(GatewayClient(args.gateway, root_certificates=root, timeout=60.0))


def _audit(args: argparse.Namespace) -> int:
    from fedledger.keys import address_of

    from . import report
    from .replay import replay

    source = _source(args)
    events = source.events()
    state = replay(events, source.config)
    command = args.audit_command
    tables = AuditTables(args.wei)
    if command == "task":
        _print(args, report.task_report(source.task_address, source.config, state), tables.task_table)
        return 0
    if command == "rounds":
        rows = [report.round_summary(state, r) for r in sorted(state.rounds.values(), key=lambda r: r.round)]
        _print(args, rows, lambda data: tables.rounds_table(data, state.reward_pool))
        return 0
    if command == "round":
        record = state.rounds.get(args.number)
        if record is None:
            raise CommandError(f"round {args.number} was never opened (rounds: {sorted(state.rounds) or 'none'})")
        _print(args, report.round_detail(state, record), tables.round_table)
        return 0
    if command == "participant":
        address = address_of(args.address)
        if address not in state.members:
            raise CommandError(f"{address} never took part in task {source.task_address}")
        _print(args, report.participant_report(state, address), tables.participant_table)
        return 0
    result = report.verify(state, source, len(events))
    _print(args, result, _verify_table)
    return 0 if result.ok else 1


def _print(args: argparse.Namespace, data: Any, table: Any) -> None:
    from pydantic import BaseModel, TypeAdapter

    if not args.json:
        table(data)
    elif isinstance(data, BaseModel):
        print(data.model_dump_json(indent=2))
    else:
        print(TypeAdapter(list[Any]).dump_json(data, indent=2).decode())


class AuditTables:
    """The tables, with amounts in ETH (or exact wei with ``--wei``)."""

    def __init__(self, wei: bool) -> None:
        """Amounts in wei when ``wei``, else in ETH."""
        self.wei = wei
        self.unit = "wei" if wei else "ETH"

    def amount(self, value: int | None, *, signed: bool = False) -> str:
        """``value`` (wei) in the table's unit; '-' for none."""
        if value is None:
            return "-"
        if self.wei:
            return f"{value:+d}" if signed else str(value)
        return eth(value, signed=signed)

    def task_table(self, t: TaskReport) -> None:
        """``audit task``: the parameters, and the reward pool left."""
        rows = [
            (
                name,
                f"{self.amount(value)} {self.unit}" if name == "min_stake" and isinstance(value, int) else str(value),
            )
            for name, value in t.parameters.items()
        ]
        rows.append(("reward pool left", f"{self.amount(t.reward_pool)} {self.unit}"))
        console.print(fitted_table(f"task {t.task}", ("parameter", "value"), rows, show_header=False, console=console))

    def rounds_table(self, rows: list[RoundSummary], pool: int) -> None:
        """``audit rounds``: one line per round, then the pool left."""
        paid, slashed = f"paid {self.unit}", f"slashed {self.unit}"
        columns = ("round", "proposers", "voters", "candidate", "tallies", "accepted", paid, slashed)
        cells = [
            (
                str(r.round) + ("" if r.finalized else " (open)"),
                str(len(r.proposers)),
                str(len(r.voters)),
                r.candidate or "-",
                " ".join(map(str, r.tallies)) or "-",
                f"{len(r.accepted)}/{r.updates}",
                self.amount(r.paid),
                self.amount(r.slashed),
            )
            for r in rows
        ]
        console.print(fitted_table("rounds", columns, cells, right=(paid, slashed), console=console))
        console.print(f"reward pool left: {self.amount(pool)} {self.unit}", highlight=False)

    def round_table(self, d: RoundDetail) -> None:
        """``audit round N``: commitments, votes, rewards and slashes."""
        console.print(
            f"round {d.round}  finalized={d.finalized}\nseed {d.seed}\nglobal model {d.global_model_hash}",
            highlight=False,
        )
        commitments = [
            (c.proposer, c.update_hash or "missing", str(c.num_examples or "-"), str(c.accepted)) for c in d.commitments
        ]
        console.print(
            fitted_table(
                "commitments", ("proposer", "update hash", "examples", "accepted"), commitments, console=console
            )
        )
        from fedledger.contracts.types import vote_letters

        votes = [
            (
                v.voter,
                "yes" if v.commitment else "no",
                "-" if v.revealed_bits is None else vote_letters(v.revealed_bits, len(v.items)),
                " ".join(map(str, v.items)),
            )
            for v in d.votes
        ]
        columns = ("voter", "committed", "revealed (A accept, R reject, . abstain)", "on proposer seats")
        console.print(fitted_table("votes", columns, votes, console=console))
        amount = f"amount {self.unit}"
        payouts = [(p.account, "reward", self.amount(p.amount), "") for p in d.rewards]
        payouts += [(p.account, "slash", self.amount(p.amount), p.reason or "") for p in d.slashes]
        console.print(
            fitted_table(
                "rewards and slashes", ("account", "kind", amount, "reason"), payouts, right=(amount,), console=console
            )
        )

    def participant_table(self, r: ParticipantReport) -> None:
        """``audit participant``: balances, then every event with its amount and the stake after it."""
        unit = self.unit
        console.print(
            f"{r.address}\nstake {self.amount(r.stake)} {unit}, owed {self.amount(r.owed)} {unit}\n"
            f"rewarded {self.amount(r.total_rewarded)} {unit}, slashed {self.amount(r.total_slashed)} {unit}",
            highlight=False,
        )
        amount, after = f"amount {unit}", f"stake after {unit}"
        rows = [
            (
                str(e.block),
                e.event,
                str(e.round or "-"),
                self.amount(e.amount, signed=e.event == "StakeChanged"),
                self.amount(e.stake),
            )
            for e in r.history
        ]
        console.print(
            fitted_table(
                "history", ("block", "event", "round", amount, after), rows, right=(amount, after), console=console
            )
        )


def _verify_table(r: VerifyReport) -> None:
    console.print(
        f"task {r.task}: {r.events} events, {r.rounds_checked} finalized rounds replayed; blobs "
        f"{r.blobs_ok} ok, {r.blobs_unreachable} unreachable, {r.blobs_corrupted} corrupted",
        highlight=False,
    )
    if r.ok:
        console.print("[green]no disagreement[/]")
        return
    for line in r.disagreements:
        console.print(f"[red]DISAGREEMENT[/] {line}", highlight=False)
