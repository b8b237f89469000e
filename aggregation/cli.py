"""``fedledger strategies``: list the registered strategies."""

from __future__ import annotations

import argparse

from rich.console import Console

from fedledger.tables import fitted_table

console = Console()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``strategies`` command."""
    cmd = commands.add_parser("strategies", help="list the registered aggregation strategies")
    cmd.set_defaults(handler=_list)


def _list(_args: argparse.Namespace) -> int:
    from .registry import entry_point_value, get_strategy, strategy_names

    rows = []
    for name in strategy_names():
        plugin = get_strategy(name)
        server = type(plugin.server_strategy()).__name__
        rows.append((name, plugin.paper, server, plugin.default_task, entry_point_value(name)))
    columns = ("name", "paper", "server strategy", "default task", "entry point")
    console.print(fitted_table("strategies (entry points fedledger.strategies)", columns, rows, console=console))
    return 0
