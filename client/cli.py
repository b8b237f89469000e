"""``fedledger node init|status|join``: a node's identity, its standing in the task, joining a federation."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from fedledger.deploy.cli import ether
from fedledger.errors import CommandError

if TYPE_CHECKING:  # grpc and the proto stubs load only when a command talks to a gateway
    from fedledger.server.client import GatewayClient

console = Console()

DEFAULT_KEYSTORE = Path.home() / ".fedledger" / "keystore.json"


def add_gateway_options(cmd: argparse.ArgumentParser) -> None:
    """``--gateway`` and ``--tls-ca``."""
    cmd.add_argument("--gateway", required=True, help="gateway address host:port")
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) when the gateway uses TLS")


def gateway_client(args: argparse.Namespace, timeout: float = 30.0, reconnect: bool = False) -> GatewayClient:
    """A connected :class:`~fedledger.server.client.GatewayClient` from the gateway options."""
    from fedledger.server.client import GatewayClient

    root = args.tls_ca.read_bytes() if args.tls_ca is not None else None
    return GatewayClient(args.gateway, root_certificates=root, timeout=timeout, reconnect=reconnect)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``node`` command group."""
    group = commands.add_parser("node", help="a participant node: key, status, join a federation")
    sub = group.add_subparsers(title="node commands", dest="node_command", metavar="COMMAND")

    init = sub.add_parser("init", help="create an encrypted keystore for this node")
    init.add_argument("--keystore", type=Path, default=DEFAULT_KEYSTORE, help="where to write it (default %(default)s)")
    init.set_defaults(handler=_init)

    status = sub.add_parser("status", help="registration, stake and rewards owed, as the task sees them")
    add_gateway_options(status)
    who = status.add_mutually_exclusive_group()
    who.add_argument("--keystore", type=Path, help="read the address from this keystore (no password needed)")
    who.add_argument("--address", help="the account to show")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)
    join = sub.add_parser(
        "join",
        help="register and stake if needed, then serve the task as a Flower SuperNode",
        description=(
            "Join a live federation: register and stake through the gateway (if not a member yet), then run a "
            "Flower SuperNode with fedledger's ClientApp against the coordinator's SuperLink until Ctrl-C. "
            "The keystore password comes from $FEDLEDGER_KEY_PASSWORD or is asked."
        ),
    )
    add_gateway_options(join)
    join.add_argument("--superlink", required=True, help="the coordinator's SuperLink host:port")
    join.add_argument("--superlink-ca", type=Path, help="CA certificate (PEM) when the SuperLink uses TLS")
    join.add_argument("--keystore", type=Path, default=DEFAULT_KEYSTORE, help="this node's key (default %(default)s)")
    join.add_argument(
        "--data", required=True, help="TASK:INDEX/COUNT (a demo partition, e.g. digits:0/3) or a .npz file"
    )
    join.add_argument("--stake", type=ether, help="stake to hold in ether (default: the task's minimum)")
    join.add_argument("--log-file", type=Path, help="write the SuperNode's log here instead of the terminal")
    join.set_defaults(handler=_join)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def _new_password() -> str:
    from fedledger.keys import PASSWORD_ENV

    if PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    else:
        password = getpass.getpass("new keystore password: ")
        if getpass.getpass("repeat it: ") != password:
            raise CommandError("the passwords differ")
    if len(password) < 8:
        raise CommandError("use a password of at least 8 characters")
    return password


def _init(args: argparse.Namespace) -> int:
    from fedledger.keys import create_keystore

    account = create_keystore(args.keystore, _new_password())
    console.print(f"created {args.keystore} for {account.address}", highlight=False)
    return 0


def _address(args: argparse.Namespace) -> str:
    from eth_utils import is_address, to_checksum_address

    if args.address:
        if not is_address(args.address):
            raise CommandError(f"not an address: {args.address}")
        return to_checksum_address(args.address)
    path = args.keystore or DEFAULT_KEYSTORE
    try:
        return to_checksum_address(json.loads(path.read_text(encoding="utf-8"))["address"])
    except (OSError, KeyError, ValueError) as exc:
        raise CommandError(f"cannot read an address from keystore {path}: {exc}") from exc


def _status(args: argparse.Namespace) -> int:
    address = _address(args)
    with gateway_client(args) as client:
        info = client.account(address)
        task = client.task_info()
    wei = 10**18
    data = {
        "address": address,
        "task": task.task_address,
        "registered": info.registered,
        "exiting": info.exiting,
        "stake_wei": int(info.stake_wei),
        "owed_wei": int(info.owed_wei),
        "balance_wei": int(info.balance_wei),
        "action_nonce": info.action_nonce,
        "current_round": task.current_round,
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    table = Table(title=f"node {address}", show_header=False)
    table.add_row("task", task.task_address)
    table.add_row("registered", "yes" if info.registered else "no")
    table.add_row("exiting", "yes" if info.exiting else "no")
    table.add_row("stake", f"{int(info.stake_wei) / wei:.6f} ETH")
    table.add_row("rewards owed", f"{int(info.owed_wei) / wei:.6f} ETH")
    table.add_row("balance", f"{int(info.balance_wei) / wei:.6f} ETH")
    table.add_row("current round", str(task.current_round))
    console.print(table)
    return 0


def _join(args: argparse.Namespace) -> int:
    from fedledger.keys import PASSWORD_ENV, load_key, read_password
    from fedledger.processes import interrupt_on_terminate

    from .data import DataSpecError, parse_data_spec
    from .join import SuperNode, ensure_member, supernode_command

    try:
        data = parse_data_spec(args.data)
    except DataSpecError as exc:
        raise CommandError(str(exc)) from exc
    password = os.environ.get(PASSWORD_ENV) or read_password(f"password for {args.keystore}: ")
    key = load_key(args.keystore, password)
    with gateway_client(args, timeout=60.0, reconnect=True) as gateway:
        try:
            gateway.wait_ready(timeout=60)
        except TimeoutError as exc:
            raise CommandError(f"no gateway answers at {args.gateway}") from exc
        member = ensure_member(gateway, key, args.stake)
    joined = "registered" if member.registered_now else "already a member"
    console.print(
        f"{member.address} {joined} in task {member.task}, stake {member.stake_wei / 10**18} ETH; "
        f"serving data {data} through SuperLink {args.superlink} (Ctrl-C to leave)",
        highlight=False,
    )
    command = supernode_command(args.superlink, args.keystore, data, args.gateway, args.superlink_ca)
    node = SuperNode(command, password, args.log_file)
    interrupt_on_terminate()
    try:
        code = node.wait()
    except KeyboardInterrupt:
        console.print("stopping the node ...")
        return 0
    finally:
        node.stop()
    if code != 0:
        raise CommandError(f"the SuperNode exited with code {code}")
    return 0
