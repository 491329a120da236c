"""How results are printed: `-o table` (aligned columns), `-o json`, `-o yaml`.

On a terminal, tables are drawn with rich (bold headers, colours); anywhere
else (a pipe, a file, a test) they are plain aligned text with no escape codes,
so scripts and golden tests see the same bytes every time. NO_COLOR is honoured.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import click
import yaml
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "yaml")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, two spaces apart, no trailing spaces (kubectl-like)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines) + "\n"


class Output:
    def __init__(self, fmt: str) -> None:
        self.format = fmt
        stdout = sys.stdout
        self.tty = _is_tty(stdout) and not os.environ.get("NO_COLOR")
        self._console = Console(file=stdout, no_color=not self.tty) if self.tty else None
        self._errors = Console(
            file=sys.stderr,
            no_color=not (_is_tty(sys.stderr) and not os.environ.get("NO_COLOR")),
            highlight=False,
            soft_wrap=True,
        )

    @property
    def errors(self) -> Console:
        return self._errors

    def data(self, value: Any) -> None:
        """A value as JSON or YAML (the table format prints JSON for a bare value)."""
        if self.format == "yaml":
            click.echo(yaml.safe_dump(value, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], value: Any) -> None:
        if self.format != "table":
            self.data(value)
            return
        if self._console is None:
            click.echo(plain_table(headers, rows), nl=False)
            return
        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self._console.print(table)

    def record(self, pairs: Sequence[tuple[str, str]], value: Any) -> None:
        """One object: `KEY  value` lines in table format."""
        if self.format != "table":
            self.data(value)
            return
        width = max((len(key) for key, _ in pairs), default=0)
        for key, text in pairs:
            click.echo(f"{key.ljust(width)}  {text}".rstrip())

    def note(self, message: str) -> None:
        """Progress and hints: stderr, so stdout stays the result."""
        self._errors.print(message, markup=False)

    def problem(self, message: str) -> None:
        self._errors.print(f"error: {message}", style="red", markup=False)
