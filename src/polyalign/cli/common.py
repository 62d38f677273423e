"""Shared CLI helpers: consoles and tables (the progress bar and the stderr console come from
polyalign.progress, shared with the library)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ..progress import err_console, progress

console = Console()


def make_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table; numbers are right-aligned."""
    table = Table(title=title, show_lines=False, header_style="bold")
    rows = [list(r) for r in rows]
    for i, col in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) or r[i] in ("", None, "-") for r in rows)
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


__all__ = ["console", "err_console", "make_table", "progress"]
