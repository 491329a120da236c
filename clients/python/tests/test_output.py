"""Plain tables (what a pipe or a test sees) are aligned and free of escape codes."""

from __future__ import annotations

from nanofaas_client.cli.output import plain_table


def test_plain_table_golden() -> None:
    assert plain_table(
        ["NAME", "MODE", "N"], [["hello", "WARM", "4"], ["a-much-longer-name", "JOB", ""]]
    ) == ("NAME                MODE  N\nhello               WARM  4\na-much-longer-name  JOB\n")
