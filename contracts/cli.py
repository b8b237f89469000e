"""``fedledger contracts ...``: build and check the committed artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .compiler import BUILD_DIR, compile_sources, render_artifact, write_artifacts

console = Console()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``contracts`` command group."""
    group = commands.add_parser("contracts", help="compile and lint the Solidity contracts")
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
    lint_cmd = sub.add_parser("lint", help="run Slither over the contracts; exit 1 on any High or Medium finding")
    lint_cmd.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report to FILE")
    lint_cmd.add_argument("--all", action="store_true", help="list Low, Informational and Optimization findings too")
    lint_cmd.set_defaults(handler=_lint)
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


def _lint(args: argparse.Namespace) -> int:
    from .compiler import CompileError
    from .lint import FAILING_IMPACTS, lint

    try:
        with console.status("compiling and running Slither (about a minute) ..."):
            report = lint()
    except CompileError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if args.json is not None:
        args.json.write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{impact} {n}" for impact, n in report.counts().items())
    console.print(f"Slither {report.slither_version} on {', '.join(report.contracts)}: {counts}")
    if report.notes:
        console.print(f"({len(report.notes)} note(s) on OpenZeppelin code Slither could not fully analyse: see --json)")
    shown = report.findings if args.all else report.failing
    for finding in shown:
        console.print(
            f"[bold]{finding.impact}[/] {finding.check} at {finding.location}: {finding.description}", soft_wrap=True
        )
    if report.failing:
        console.print(
            f"[red]{len(report.failing)} {' or '.join(FAILING_IMPACTS)} finding(s)[/]: fix them, or suppress a "
            "false positive where it stands with `// slither-disable-next-line DETECTOR` and the reason"
        )
        return 1
    console.print("no High or Medium finding")
    return 0
