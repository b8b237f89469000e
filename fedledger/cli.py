"""The ``fedledger`` command line.

Each part of the product registers its own sub-commands (``contracts/cli.py``,
``deploy/cli.py``, ...); this module only assembles them and turns the errors a user can cause
into one clear line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails
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
    parser.add_argument(
        "--version", action=_Version, help="print the package, contracts and library versions, then exit"
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for register in _registrars():
        register(commands)
    doctor = commands.add_parser(
        "doctor",
        help="check this machine: Python, torch, Node.js, the npm toolchain, anvil, the default ports",
        description="Check what fedledger needs on this machine; print what is missing and the command that fixes it.",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(handler=_doctor)
    return parser


class _Version(argparse.Action):
    """``--version``, computed only when asked (it reads the contract artifacts)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        from fedledger.doctor import version_text

        print(version_text())
        parser.exit()


def _doctor(args: argparse.Namespace) -> int:
    """Run every check; exit 1 when something needed is missing."""
    from fedledger.doctor import run_checks
    from fedledger.tables import fitted_table

    checks = run_checks()
    missing = [c for c in checks if c.status == "missing"]
    if args.json:
        print(json.dumps([c.model_dump() for c in checks], indent=2))
        return 1 if missing else 0
    console = Console()
    colour = {"ok": "green", "warning": "yellow", "missing": "bold red"}
    rows = [(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix) for c in checks]
    console.print(fitted_table("fedledger doctor", ("check", "status", "found", "fix"), rows, console=console))
    if missing:
        console.print(f"{len(missing)} missing: run the commands in the fix column", highlight=False)
        return 1
    console.print(f"fedledger {__version__}: everything it needs is here", highlight=False)
    return 0


def _problem(error: ErrorDetails) -> str:
    """One validation error as a user reads it: the field (none for a whole-model check) and what is wrong."""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(map(str, error["loc"]))
    return f"{where}: {message}" if where else message


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
        return f"invalid input: {'; '.join(_problem(e) for e in exc.errors())}"
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
