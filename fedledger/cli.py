"""The ``fedledger`` command line.

Each part of the product registers its own sub-commands (``contracts/cli.py``,
``deploy/cli.py``, ...); this module only assembles them and turns the errors a user can cause
into one clear line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from rich.console import Console

from fedledger import __version__
from fedledger.errors import CommandError

err_console = Console(stderr=True)

Register = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _registrars() -> list[Register]:
    from fedledger.aggregation.cli import register as strategies
    from fedledger.audit.cli import register as audit
    from fedledger.client.cli import register as node
    from fedledger.client.cli import register_round as round_commands
    from fedledger.client.cli import register_task as task
    from fedledger.contracts.cli import register as contracts
    from fedledger.deploy.chain_cli import register as chain
    from fedledger.deploy.cli import register as deploy
    from fedledger.server.coordinator.cli import register as coordinate
    from fedledger.server.gateway.cli import register as gateway
    from fedledger.simulation.cli import register as simulate

    return [simulate, strategies, contracts, chain, deploy, gateway, coordinate, node, task, round_commands, audit]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="fedledger",
        description="Federated learning whose rounds are governed by Ethereum smart contracts.",
    )
    parser.add_argument("--version", action="version", version=f"fedledger {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for register in _registrars():
        register(commands)
    return parser


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug."""
    import grpc

    from fedledger.contracts.compiler import CompileError
    from fedledger.contracts.errors import as_contract_revert
    from fedledger.deploy.chain import ChainUnavailable
    from fedledger.keys import KeyFileError

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"gateway answered {exc.code().name}: {exc.details()}"
    revert = as_contract_revert(exc)
    if revert is not None:
        return f"transaction reverted: {revert.describe()}"
    from web3.exceptions import Web3RPCError

    if isinstance(exc, Web3RPCError):
        return f"the chain node refused: {exc.message or exc}"
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        return f"invalid input: {problems}"
    from fedledger.simulation.runner import SimulationError

    if isinstance(exc, CommandError | ChainUnavailable | CompileError | KeyFileError | FileNotFoundError):
        return str(exc)
    if isinstance(exc, SimulationError):
        return str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
