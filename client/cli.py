"""``fedledger node init|status|join``: a node's identity, its standing in the task, joining a federation."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from fedledger.deploy.cli import ether
from fedledger.deploy.localchain import DEFAULT_HOME
from fedledger.errors import CommandError
from fedledger.tables import fitted_table

if TYPE_CHECKING:  # grpc and the proto stubs load only when a command talks to a gateway
    from eth_account.signers.local import LocalAccount

    from fedledger.server.gateway.client import GatewayClient

    from .lifecycle import Backend

console = Console()

DEFAULT_KEYSTORE = Path.home() / ".fedledger" / "keystore.json"


def add_gateway_options(cmd: argparse.ArgumentParser) -> None:
    """``--gateway`` and ``--tls-ca``."""
    cmd.add_argument("--gateway", required=True, help="gateway address host:port")
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) when the gateway uses TLS")


def add_chain_options(cmd: argparse.ArgumentParser) -> None:
    """Where a lifecycle action goes: ``--gateway`` (and ``--tls-ca``) or ``--rpc-url`` with ``--deployment``."""
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--gateway", help="gateway address host:port")
    where.add_argument("--rpc-url", help="JSON-RPC node of the task's chain (with --deployment)")
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) when the gateway uses TLS")
    cmd.add_argument("--deployment", type=Path, help="deployment manifest (with --rpc-url)")


def gateway_client(args: argparse.Namespace, timeout: float = 30.0, reconnect: bool = False) -> GatewayClient:
    """A connected :class:`~fedledger.server.gateway.client.GatewayClient` from the gateway options."""
    from fedledger.server.gateway.client import GatewayClient

    root = args.tls_ca.read_bytes() if args.tls_ca is not None else None
    return GatewayClient(args.gateway, root_certificates=root, timeout=timeout, reconnect=reconnect)


def add_keystore(cmd: argparse.ArgumentParser, what: str = "this node's key") -> None:
    """``--keystore``: the signing key (password from $FEDLEDGER_KEY_PASSWORD, or asked)."""
    cmd.add_argument("--keystore", type=Path, default=DEFAULT_KEYSTORE, help=f"{what} (default %(default)s)")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``node`` command group."""
    group = commands.add_parser("node", help="a participant node: key, status, join a federation")
    sub = group.add_subparsers(title="node commands", dest="node_command", metavar="COMMAND")

    init = sub.add_parser("init", help="create an encrypted keystore for this node")
    init.add_argument("--keystore", type=Path, default=DEFAULT_KEYSTORE, help="where to write it (default %(default)s)")
    init.set_defaults(handler=_init)

    status = sub.add_parser(
        "status", help="stake, rewards owed, exit state and the node's last rounds, as the task sees them"
    )
    add_chain_options(status)
    who = status.add_mutually_exclusive_group()
    who.add_argument("--keystore", type=Path, help="read the address from this keystore (no password needed)")
    who.add_argument("--address", help="the account to show")
    status.add_argument("--rounds", type=int, default=5, help="how many of its last rounds to list (default 5)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    stake = sub.add_parser("stake", help="add stake (the keystore's account must be a member)")
    add_chain_options(stake)
    add_keystore(stake)
    stake.add_argument("--add", type=ether, required=True, metavar="ETH", help="ether to add to the stake")
    stake.set_defaults(handler=_lifecycle, action=lambda backend, args: lifecycle_add_stake(backend, args.add))

    withdraw = sub.add_parser("withdraw", help="pull everything the task credited to this node")
    add_chain_options(withdraw)
    add_keystore(withdraw)
    withdraw.set_defaults(handler=_lifecycle, action=lambda backend, _args: lifecycle_withdraw(backend))

    leave = sub.add_parser(
        "exit",
        help="leave the task: request the exit; once its delay passed, complete it and withdraw the stake",
        description=(
            "The first call requests the exit (the node is no longer drawn). Once the task's exit delay has "
            "passed and no unfinished round holds the node, the next call completes the exit and withdraws "
            "the stake and everything owed; before that it says how long is left."
        ),
    )
    add_chain_options(leave)
    add_keystore(leave)
    leave.set_defaults(handler=_lifecycle, action=lambda backend, _args: lifecycle_exit(backend))
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
    join.add_argument(
        "--auth-key",
        type=Path,
        help="the SuperNode's authentication key (`fedledger node auth-key`) if the SuperLink admits only known nodes",
    )
    join.add_argument("--keystore", type=Path, default=DEFAULT_KEYSTORE, help="this node's key (default %(default)s)")
    join.add_argument(
        "--data", required=True, help="TASK:INDEX/COUNT (a demo partition, e.g. digits:0/3) or a .npz file"
    )
    join.add_argument("--stake", type=ether, help="stake to hold in ether (default: the task's minimum)")
    join.add_argument("--log-file", type=Path, help="write the SuperNode's log here instead of the terminal")
    join.add_argument(
        "--stay",
        action="store_true",
        help="keep serving after the task's last round (by default the node says the task is over and exits 0)",
    )
    join.add_argument(
        "--home",
        type=Path,
        default=DEFAULT_HOME,  # the working folder's, as `chain up` and the gateway use
        help="folder of the node's own files: Flower's home goes in HOME/nodes/ADDRESS/flwr (default %(default)s)",
    )
    join.set_defaults(handler=_join)
    auth = sub.add_parser(
        "auth-key",
        help="make this node's SuperNode authentication key pair (the coordinator admits the .pub)",
    )
    auth.add_argument("--out", type=Path, required=True, help="private key file; the public key goes to OUT.pub")
    auth.set_defaults(handler=_auth_key)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def register_task(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``task`` command group (the task owner's actions)."""
    group = commands.add_parser("task", help="the task owner's actions: fund the reward pool")
    sub = group.add_subparsers(title="task commands", dest="task_command", metavar="COMMAND")
    fund = sub.add_parser("fund", help="add ether to the task's reward pool")
    add_chain_options(fund)
    add_keystore(fund, "the paying key")
    fund.add_argument("--pool", type=ether, required=True, metavar="ETH", help="ether to add to the reward pool")
    fund.set_defaults(handler=_lifecycle, action=lambda backend, args: lifecycle_fund(backend, args.pool))
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def register_round(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``round`` command group (what anyone may do to a round)."""
    group = commands.add_parser("round", help="what anyone may do to a round: settle one left behind")
    sub = group.add_subparsers(title="round commands", dest="round_command", metavar="COMMAND")
    settle = sub.add_parser(
        "settle",
        help="advance and finalize a round whose deadlines passed (e.g. its coordinator crashed); "
        "`fedledger coordinate` then resumes after it",
    )
    settle.add_argument("round", type=int, metavar="ROUND", help="the round to settle")
    add_chain_options(settle)
    add_keystore(settle, "any funded key: it pays the gas")
    settle.set_defaults(handler=_lifecycle, action=lambda backend, args: lifecycle_settle(backend, args.round))
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def lifecycle_settle(backend: object, round_: int) -> str:
    """``round settle ROUND``."""
    from .lifecycle import settle_round

    if round_ < 1:
        raise CommandError(f"rounds are numbered from 1, got {round_}")
    return settle_round(backend, round_)  # type: ignore[arg-type]


def lifecycle_fund(backend: object, amount: int) -> str:
    """``task fund --pool``."""
    from .lifecycle import fund_pool

    return fund_pool(backend, amount)  # type: ignore[arg-type]


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
    from fedledger.keys import address_of

    return address_of(args.address or str(args.keystore or DEFAULT_KEYSTORE))


def lifecycle_add_stake(backend: object, amount: int) -> str:
    """``node stake --add`` (see :func:`fedledger.client.lifecycle.add_stake`)."""
    from .lifecycle import add_stake

    return add_stake(backend, amount)  # type: ignore[arg-type]


def lifecycle_withdraw(backend: object) -> str:
    """``node withdraw``."""
    from .lifecycle import withdraw

    return withdraw(backend)  # type: ignore[arg-type]


def lifecycle_exit(backend: object) -> str:
    """``node exit``."""
    from .lifecycle import exit_task

    return exit_task(backend)  # type: ignore[arg-type]


@contextlib.contextmanager
def backend_for(args: argparse.Namespace, key: LocalAccount | None, address: str | None = None) -> Iterator[Backend]:
    """The lifecycle backend the options name: a gateway, or a JSON-RPC node with its deployment manifest.

    Without ``key`` the backend reads ``address``'s standing only.
    """
    from .lifecycle import GatewayBackend, RpcBackend

    if args.rpc_url:
        if args.deployment is None:
            raise CommandError("--rpc-url needs --deployment (the manifest `fedledger deploy --out` wrote)")
        yield RpcBackend(args.rpc_url, args.deployment, key, address)
        return
    with gateway_client(args) as client:
        yield GatewayBackend(client, key, address)


def signing_key(path: Path) -> LocalAccount:
    """The keystore's account (password from $FEDLEDGER_KEY_PASSWORD, or asked)."""
    from fedledger.keys import load_key

    return load_key(path)


def _lifecycle(args: argparse.Namespace) -> int:
    key = signing_key(args.keystore)
    with backend_for(args, key) as backend:
        console.print(args.action(backend, args), highlight=False, soft_wrap=True)  # hashes stay whole
    return 0


def _status(args: argparse.Namespace) -> int:
    from .lifecycle import ether, my_rounds

    address = _address(args)
    with backend_for(args, None, address) as backend:
        member = backend.member()
        balance = backend.balance()
        current = backend.current_round()
        now = backend.chain_time()
        rounds = my_rounds(backend.history(), address, args.rounds)
        task_address = backend.task_address
    exit_state = "no"
    if member.exiting:
        left = member.exit_ready_at - now
        exit_state = "requested, due now" if left <= 0 else f"requested, due in {left} s"
    data = {
        "address": address,
        "task": task_address,
        "registered": member.registered,
        "member_index": member.index if member.registered else None,
        "exiting": member.exiting,
        "exit_ready_at": member.exit_ready_at if member.exiting else None,
        "stake_wei": member.stake,
        "owed_wei": member.owed,
        "balance_wei": balance,
        "action_nonce": member.nonce,
        "current_round": current.round,
        "current_phase": current.phase.name,
        "rounds": [r.__dict__ for r in rounds],
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    facts = [
        ("task", task_address),
        ("registered", f"yes (member index {member.index})" if member.registered else "no"),
        ("exit", exit_state),
        ("stake", ether(member.stake)),
        ("owed (withdrawable)", ether(member.owed)),
        ("balance", ether(balance)),
        ("current round", f"{current.round} ({current.phase.name.lower()})"),
    ]
    console.print(fitted_table(f"node {address}", ("what", "value"), facts, console=console, show_header=False))
    if rounds:
        columns = ("round", "role", "acted", "outcome", "rewarded", "slashed")
        rows = [(str(r.round), r.role, r.acted, r.outcome, ether(r.rewarded_wei), ether(r.slashed_wei)) for r in rounds]
        title = f"last {len(rounds)} rounds of this node"
        console.print(fitted_table(title, columns, rows, console=console, right=("round", "rewarded", "slashed")))
    return 0


def _auth_key(args: argparse.Namespace) -> int:
    from .join import make_auth_key

    public = make_auth_key(args.out)
    console.print(
        f"SuperNode key: {args.out} (private, stays here); public key: {public}\n"
        f"give {public} to the coordinator (`fedledger coordinate --allow-node {public.name}`), then join with "
        f"`--auth-key {args.out}`",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _join(args: argparse.Namespace) -> int:
    from fedledger.keys import PASSWORD_ENV, load_key, read_password
    from fedledger.processes import interrupt_on_terminate

    from .agent import NodeAgent
    from .data import DataSpecError, parse_data_spec
    from .join import SuperNode, ensure_member, serve, supernode_command, task_over

    try:
        data = parse_data_spec(args.data)
    except DataSpecError as exc:
        raise CommandError(str(exc)) from exc
    gateway = gateway_client(args, timeout=60.0, reconnect=True)
    try:
        try:
            gateway.wait_ready(timeout=60)
        except TimeoutError as exc:
            raise CommandError(f"no gateway answers at {args.gateway}") from exc
        finished = task_over(gateway)
        if finished is not None and not args.stay:
            console.print(f"{finished}; not joining", highlight=False, soft_wrap=True)
            return 0
        password = os.environ.get(PASSWORD_ENV) or read_password(f"password for {args.keystore}: ")
        key = load_key(args.keystore, password)
        del password
        if finished is not None and not gateway.account(key.address).registered:
            raise CommandError(f"{finished}: registering now would only lock the stake")
        member = ensure_member(gateway, key, args.stake)
        joined = "registered" if member.registered_now else "already a member"
        console.print(
            f"{member.address} {joined} in task {member.task}, stake {member.stake_wei / 10**18} ETH; "
            f"serving data {data} through SuperLink {args.superlink} (Ctrl-C to leave)",
            highlight=False,
        )
        agent = NodeAgent(key, gateway).start()
        command = supernode_command(
            args.superlink, agent.path, data, args.gateway, args.superlink_ca,
            gateway_ca=args.tls_ca, auth_key=args.auth_key,
        )  # fmt: skip
        node = SuperNode(command, args.log_file, flwr_home=args.home / "nodes" / member.address / "flwr")
        interrupt_on_terminate()
        try:
            code = serve(
                node,
                lambda: task_over(gateway),
                lambda line: console.print(line, highlight=False, soft_wrap=True),
                stay=args.stay,
                waiting_for=f"a SuperLink at {args.superlink}",
            )
        except KeyboardInterrupt:
            console.print("stopping the node ...")
            return 0
        finally:
            node.stop()
            agent.stop()
    finally:
        gateway.close()
    if code != 0:
        hint = (
            f"; if it could not activate, the SuperLink does not admit this node's key: the coordinator passes "
            f"`--allow-node {args.auth_key}.pub` to `fedledger coordinate`"
            if args.auth_key is not None
            else ""
        )
        raise CommandError(f"the SuperNode exited with code {code} (its log says why){hint}")
    return 0
