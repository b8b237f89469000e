"""``fedledger chain up|down|fund``: a local anvil chain for a live federation on one machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from fedledger.errors import CommandError

from .cli import ether
from .localchain import DEFAULT_HOME, LocalChainError, chain_down, chain_up

console = Console()
err_console = Console(stderr=True)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``chain`` command group."""
    group = commands.add_parser("chain", help="a local anvil chain: up, down, fund accounts")
    sub = group.add_subparsers(title="chain commands", dest="chain_command", metavar="COMMAND")
    home_help = "folder recording the chain this command started (default %(default)s)"

    up = sub.add_parser("up", help="start anvil on 127.0.0.1 and print its RPC URL")
    up.add_argument("--port", type=int, default=8545, help="JSON-RPC port (default %(default)s)")
    up.add_argument("--state", type=Path, help="load the chain from FILE if it exists and save it there on `down`")
    up.add_argument("--accounts", type=int, default=10, help="funded dev accounts (default %(default)s)")
    up.add_argument("--home", type=Path, default=DEFAULT_HOME, help=home_help)
    up.set_defaults(handler=_up)

    down = sub.add_parser("down", help="stop the chain `chain up` started (by its PID)")
    down.add_argument("--home", type=Path, default=DEFAULT_HOME, help=home_help)
    down.set_defaults(handler=_down)

    fund = sub.add_parser("fund", help="send ether to accounts (anvil's first dev key pays unless --key-file)")
    fund.add_argument("addresses", nargs="+", metavar="ADDRESS", help="accounts to fund, or their keystore files")
    fund.add_argument("--rpc-url", default="http://127.0.0.1:8545", help="JSON-RPC node (default %(default)s)")
    fund.add_argument("--amount", type=ether, default=10 * 10**18, help="ether per account (default 10)")
    fund.add_argument("--key-file", type=Path, help="paying key: eth-account keystore or hex key file")
    fund.set_defaults(handler=_fund)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def _up(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536 or args.accounts < 1:
        raise CommandError("--port must be a TCP port and --accounts at least 1")
    try:
        record = chain_up(args.home, args.port, args.state, args.accounts)
    except LocalChainError as exc:
        raise CommandError(str(exc)) from exc
    state = f", state saved to {record.state_file} on `fedledger chain down`" if record.state_file else ""
    err_console.print(f"anvil running (pid {record.pid}, log {record.log_file}){state}", highlight=False)
    print(record.url)  # alone on stdout, for scripts: RPC_URL=$(fedledger chain up)
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        record = chain_down(args.home)
    except LocalChainError as exc:
        raise CommandError(str(exc)) from exc
    if record is None:
        console.print(f"no running chain was started from {args.home}")
    else:
        console.print(f"stopped anvil (pid {record.pid}) at {record.url}", highlight=False)
    return 0


def _fund(args: argparse.Namespace) -> int:
    from eth_account import Account

    from fedledger.keys import address_of, load_key

    from .anvil import ANVIL_DEV_KEY
    from .chain import connect, fund, use_account

    addresses = [address_of(a) for a in args.addresses]  # a bad one is a one-line KeyFileError
    w3 = connect(args.rpc_url)
    if args.key_file is not None:
        payer = use_account(w3, load_key(args.key_file))
    else:
        err_console.print("[bold yellow]WARNING: paying with anvil's first DEV KEY (public; local chains only).[/]")
        payer = use_account(w3, Account.from_key(ANVIL_DEV_KEY))
    if w3.eth.get_balance(payer) < args.amount * len(addresses):
        raise CommandError(f"{payer} cannot pay {len(addresses)} x {args.amount} wei")
    fund(w3, payer, addresses, args.amount)
    for address in addresses:
        console.print(f"{address}: {w3.eth.get_balance(address) / 10**18:.4f} ETH", highlight=False)
    return 0
