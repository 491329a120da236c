"""The CLI commands that need no platform: up (a checkout's launcher) and completion."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from nanofaas_client.cli import exit_codes
from nanofaas_client.cli.main import cli, find_checkout

LAUNCHER = "import sys\nprint('up with', sys.argv[1:])\nraise SystemExit(3)\n"


def fake_checkout(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "up.py").write_text(LAUNCHER)
    (root / "Makefile").write_text("up:\n")
    return root


def test_up_runs_the_checkouts_launcher_with_its_arguments(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path / "repo")
    assert find_checkout(root / "scripts") == root
    result = CliRunner().invoke(cli, ["up", "--repo", str(root), "--port", "9999"])
    # The launcher is a real child process: its exit code is ours (its output went to the terminal).
    assert result.exit_code == 3


def test_up_outside_a_checkout_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["up", "--repo", str(tmp_path)])
    assert result.exit_code == exit_codes.USAGE
    assert "not inside a nanofaas checkout" in result.stderr


def test_completion_script() -> None:
    result = CliRunner().invoke(cli, ["completion", "bash"])
    assert result.exit_code == 0
    assert "_NANOFAAS_COMPLETE" in result.stdout
