"""Terminal tables that fit the terminal: a value is folded onto more lines, never cut."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

WEI_PER_ETH = 10**18
WHOLE = 14
"""Words up to this many characters stay whole while the table fits; longer ones (addresses,
hashes) fold where they must."""


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split() if len(word) <= WHOLE), default=1)


def fitted_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    console: Console,
    right: Sequence[str] = (),
    caption: str | None = None,
    **options: Any,
) -> Table:
    """A table of ``rows`` that fits ``console``'s width: cells fold onto more lines, never end in "…".

    Each column is first kept as wide as its longest word (header and cells); when that is wider
    than the terminal, as wide as its header's longest word; then as narrow as needed. ``right``
    names the columns to right-align (numbers). The light box leaves the columns most of an
    80-column terminal.
    """
    rows = [list(row) for row in rows]
    header_words = [_longest_word(name) for name in columns]
    cell_words = [max([h, *(_longest_word(row[i]) for row in rows)]) for i, h in enumerate(header_words)]
    table = Table()
    for minimums in (cell_words, header_words, [1] * len(columns)):
        table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 1), **options)
        for name, minimum in zip(columns, minimums, strict=True):
            justify = "right" if name in right else "left"
            table.add_column(name, overflow="fold", min_width=minimum, justify=justify)
        for row in rows:
            table.add_row(*row)
        # Each column has a cell of padding on both sides; a light box adds one character per
        # column separator and edge. (Rich's own measurement is capped at the console's width.)
        if sum(minimums) + 3 * len(columns) + 1 <= console.width:
            break
    return table


def eth(wei: int, *, signed: bool = False, places: int = 6) -> str:
    """``wei`` in ether with ``places`` decimals (``signed``: always with its sign)."""
    value = Decimal(wei) / WEI_PER_ETH
    return f"{value:+.{places}f}" if signed else f"{value:.{places}f}"
