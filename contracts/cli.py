"""``fedledger contracts ...``: build and check the committed artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .compiler import BUILD_DIR, compile_sources, render_artifact, write_artifacts

console = Console()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``contracts`` command group."""
    group = commands.add_parser("contracts", help="compile the Solidity contracts")
    sub = group.add_subparsers(title="contracts commands", dest="contracts_command", metavar="COMMAND")
    compile_cmd = sub.add_parser(
        "compile", help="rebuild contracts/build/*.json (native solc if found, else the npm solcjs)"
    )
    compile_cmd.add_argument("--out", type=Path, default=BUILD_DIR, help="output folder (default: %(default)s)")
    compile_cmd.add_argument(
        "--check",
        action="store_true",
        help="only compare a fresh compile with the files; exit 1 if they differ",
    )
    compile_cmd.set_defaults(handler=_compile)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def _compile(args: argparse.Namespace) -> int:
    with console.status("compiling with solc ..."):
        artifacts = compile_sources()
    if args.check:
        stale = [
            name
            for name, artifact in sorted(artifacts.items())
            if not (args.out / f"{name}.json").is_file()
            or (args.out / f"{name}.json").read_text(encoding="utf-8") != render_artifact(artifact)
        ]
        if stale:
            console.print(f"[red]out of date:[/] {', '.join(stale)}; run `fedledger contracts compile`")
            return 1
        console.print(f"artifacts in {args.out} match the sources ({len(artifacts)} contracts)")
        return 0
    for path in write_artifacts(artifacts, args.out):
        console.print(f"wrote {path}")
    return 0
