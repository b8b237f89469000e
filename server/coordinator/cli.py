"""``fedledger coordinate``: run a deployed task's rounds with the nodes that join its SuperLink."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console

from fedledger.errors import CommandError
from fedledger.tables import fitted_table

from .settings import CoordinatorOptions

if TYPE_CHECKING:
    from .results import RoundResult, RunSummary

console = Console()
DEFAULTS = {name: field.default for name, field in CoordinatorOptions.model_fields.items()}


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``coordinate`` command."""
    cmd = commands.add_parser(
        "coordinate",
        help="coordinator of a live federation: SuperLink + governed ServerApp",
        description=(
            "Start a Flower SuperLink on HOST:PORT for nodes (`fedledger node join`) to join, then run the "
            "deployed task's governed rounds on it through the gateway. The keystore must hold the task's "
            "coordinator key (password from $FEDLEDGER_KEY_PASSWORD or asked)."
        ),
    )
    cmd.add_argument("--gateway", default=DEFAULTS["gateway"], help="gateway address (default %(default)s)")
    cmd.add_argument("--keystore", type=Path, required=True, help="the coordinator's keystore")
    cmd.add_argument("--nodes", type=int, default=DEFAULTS["nodes"], help="nodes to wait for (default %(default)s)")
    cmd.add_argument("--rounds", type=int, help="rounds to run (default: all the task's rounds)")
    cmd.add_argument("--task", help="task the nodes' data belongs to (default: the strategy's demo task)")
    cmd.add_argument("--strategy-options", default="", metavar="KEY=VALUE,...", help="the strategy's hyper-parameters")
    cmd.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the initial model and demo partitions")
    cmd.add_argument(
        "--partition", default=DEFAULTS["partition"], help="how demo partitions split the data: iid or dirichlet:ALPHA"
    )
    cmd.add_argument(
        "--local-epochs",
        type=int,
        default=DEFAULTS["local_epochs"],
        help="local epochs per round (default %(default)s)",
    )
    cmd.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="client learning rate (default %(default)s)")
    cmd.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="client batch size (default %(default)s)"
    )
    cmd.add_argument("--port", type=int, default=DEFAULTS["port"], help="SuperLink port (default %(default)s)")
    cmd.add_argument(
        "--host", default=DEFAULTS["host"], help="address the SuperLink listens on, for nodes (default %(default)s)"
    )
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) of the gateway's and the SuperLink's TLS")
    cmd.add_argument(
        "--tls-cert", type=Path, help="the SuperLink's TLS certificate (PEM, e.g. from `fedledger gateway certs`)"
    )
    cmd.add_argument("--tls-key", type=Path, help="the SuperLink's TLS private key (PEM)")
    cmd.add_argument(
        "--allow-node",
        type=Path,
        action="append",
        default=[],
        metavar="PUBLIC_KEY",
        help="admit only SuperNodes with these public keys (`fedledger node auth-key`; repeatable)",
    )
    cmd.add_argument(
        "--node-wait",
        type=float,
        default=DEFAULTS["node_wait"],
        help="seconds to wait for the nodes (default %(default)s)",
    )
    cmd.add_argument(
        "--superlink-db",
        type=Path,
        default=DEFAULTS["superlink_db"],
        help="the SuperLink's state, kept across restarts so joined nodes reconnect (default %(default)s)",
    )
    cmd.add_argument("--out", type=Path, help="run folder (default runs/live-<time>)")
    cmd.set_defaults(handler=_coordinate)


def _coordinate(args: argparse.Namespace) -> int:
    from fedledger.processes import interrupt_on_terminate

    from .coordinate import Coordinator

    try:
        options = _options(args)
    except ValidationError as exc:
        raise CommandError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from exc
    coordinator = Coordinator(options, on_event=_print_event)
    interrupt_on_terminate()
    summary, rounds = coordinator.run()
    _print_results(summary, rounds, coordinator.out)
    return 0


def _options(args: argparse.Namespace) -> CoordinatorOptions:
    return CoordinatorOptions(
        gateway=args.gateway,
        keystore=args.keystore,
        nodes=args.nodes,
        rounds=args.rounds,
        task=args.task,
        strategy_options=args.strategy_options,
        seed=args.seed,
        partition=args.partition,
        local_epochs=args.local_epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        port=args.port,
        node_wait=args.node_wait,
        superlink_db=args.superlink_db,
        out=args.out,
        host=args.host,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        allow_nodes=tuple(args.allow_node),
    )


def _print_results(summary: RunSummary, rounds: list[RoundResult], out: Path) -> None:
    columns = ("round", "adopted", "proposers", "rejected", "voters", "accuracy", "wall s")
    rows = [
        (
            str(r.round),
            "yes" if r.accepted else "no",
            str(len(r.proposers)),
            str(len(r.rejected)),
            str(len(r.voters)),
            "-" if r.metrics.get("accuracy") is None else f"{r.metrics['accuracy']:.3f}",
            f"{r.wall_s:.1f}",
        )
        for r in rounds
    ]
    title = f"task {summary.task_address} on chain {summary.chain_id}"
    console.print(fitted_table(title, columns, rows, console=console, right=columns))
    console.print(f"results in {out}", highlight=False)


def _print_event(event: dict[str, object]) -> None:
    detail = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("t", "round", "phase"))
    where = f"round {event['round']}: " if event.get("round") else ""
    console.print(f"{where}{event.get('phase')} {detail}".rstrip(), highlight=False)
