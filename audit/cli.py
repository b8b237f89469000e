"""``fedledger audit``: rounds, votes and payouts from contract queries and logs alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from fedledger.errors import CommandError

if TYPE_CHECKING:  # heavy: imported when a command runs
    from .report import ParticipantReport, RoundDetail, RoundSummary, TaskReport, VerifyReport
    from .source import AuditSource

console = Console()
ETH = 10**18


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``audit`` command."""
    cmd = commands.add_parser(
        "audit",
        help="audit a task from contract queries and logs",
        description="Read a task's history from the chain (or a gateway's queries) and check it.",
    )
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--gateway", help="gateway address host:port")
    where.add_argument("--rpc-url", help="JSON-RPC node (with --deployment): no gateway needed")
    where.add_argument("--run", type=Path, help="a finished `fedledger simulate` run folder (its chain export)")
    cmd.add_argument("--deployment", type=Path, help="deployment manifest (with --rpc-url)")
    cmd.add_argument("--blob-dir", type=Path, help="with --rpc-url: a gateway's blobs folder to re-hash")
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate when the gateway uses TLS")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    sub = cmd.add_subparsers(title="what to audit", dest="audit_command", metavar="WHAT", required=True)
    sub.add_parser("task", help="the task's parameters: strategy, vote mode and rule, stake, reward and slash rules")
    sub.add_parser("rounds", help="one line per round")
    one = sub.add_parser("round", help="every commitment, vote, reward and slash of a round")
    one.add_argument("number", type=int)
    who = sub.add_parser("participant", help="history and balances of a participant")
    who.add_argument("address")
    sub.add_parser("verify", help="re-hash blobs, replay every tally and payout; exit 1 on any disagreement")
    cmd.set_defaults(handler=_audit)


def _source(args: argparse.Namespace) -> AuditSource:
    from .source import ChainSource, GatewaySource, RunSource

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
    from eth_utils import is_address, to_checksum_address

    from . import report
    from .replay import replay

    source = _source(args)
    events = source.events()
    state = replay(events, source.config)
    command = args.audit_command
    if command == "task":
        _print(args, report.task_report(source.task_address, source.config), _task_table)
        return 0
    if command == "rounds":
        rows = [report.round_summary(state, r) for r in sorted(state.rounds.values(), key=lambda r: r.round)]
        _print(args, rows, _rounds_table)
        return 0
    if command == "round":
        record = state.rounds.get(args.number)
        if record is None:
            raise CommandError(f"round {args.number} was never opened (rounds: {sorted(state.rounds) or 'none'})")
        _print(args, report.round_detail(state, record), _round_table)
        return 0
    if command == "participant":
        if not is_address(args.address):
            raise CommandError(f"not an address: {args.address}")
        address = to_checksum_address(args.address)
        if address not in state.members:
            raise CommandError(f"{address} never took part in task {source.task_address}")
        _print(args, report.participant_report(state, address), _participant_table)
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


def _task_table(t: TaskReport) -> None:
    table = Table(title=f"task {t.task}", show_header=False)
    table.add_column("parameter")
    table.add_column("value")
    for name, value in t.parameters.items():
        table.add_row(name, str(value))
    console.print(table)


def _rounds_table(rows: list[RoundSummary]) -> None:
    table = Table(title="rounds")
    for column in ("round", "proposers", "voters", "candidate", "tallies", "accepted", "paid ETH", "slashed ETH"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.round) + ("" if r.finalized else " (open)"),
            str(len(r.proposers)),
            str(len(r.voters)),
            (r.candidate or "-")[:12],
            " ".join(map(str, r.tallies)) or "-",
            f"{len(r.accepted)}/{r.updates}",
            f"{r.paid / ETH:.4f}",
            f"{r.slashed / ETH:.4f}",
        )
    console.print(table)


def _round_table(d: RoundDetail) -> None:
    console.print(f"round {d.round}  seed {d.seed[:18]}…  finalized={d.finalized}  global={d.global_model_hash}")
    commitments = Table(title="commitments")
    for column in ("proposer", "update hash", "examples", "accepted"):
        commitments.add_column(column)
    for c in d.commitments:
        commitments.add_row(c.proposer, c.update_hash or "missing", str(c.num_examples or "-"), str(c.accepted))
    console.print(commitments)
    votes = Table(title="votes")
    for column in ("voter", "committed", "revealed bits"):
        votes.add_column(column)
    for v in d.votes:
        bits = "-" if v.revealed_bits is None else bin(v.revealed_bits)
        votes.add_row(v.voter, "yes" if v.commitment else "no", bits)
    console.print(votes)
    payouts = Table(title="rewards and slashes")
    for column in ("account", "kind", "amount ETH", "reason"):
        payouts.add_column(column)
    for p in d.rewards:
        payouts.add_row(p.account, "reward", f"{p.amount / ETH:.6f}", "")
    for p in d.slashes:
        payouts.add_row(p.account, "slash", f"{p.amount / ETH:.6f}", p.reason or "")
    console.print(payouts)


def _participant_table(r: ParticipantReport) -> None:
    console.print(
        f"{r.address}: stake {r.stake / ETH:.6f} ETH, owed {r.owed / ETH:.6f} ETH, "
        f"rewarded {r.total_rewarded / ETH:.6f}, slashed {r.total_slashed / ETH:.6f}",
        highlight=False,
    )
    table = Table(title="history")
    for column in ("block", "event", "round", "amount wei"):
        table.add_column(column)
    for e in r.history:
        table.add_row(str(e.block), e.event, str(e.round or "-"), str(e.amount if e.amount is not None else "-"))
    console.print(table)


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
