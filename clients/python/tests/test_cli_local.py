"""The CLI commands that need no platform: up (a checkout's launcher) and completion."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_a_venv_that_cannot_be_built_is_exit_9_with_pips_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOFAAS_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    assert runner.invoke(cli, ["fn", "init", "broken", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / "broken" / "requirements.txt").write_text("this is not a requirement!\n")
    result = runner.invoke(cli, ["--url", "http://127.0.0.1:1", "fn", "deploy", str(tmp_path / "broken")])
    assert result.exit_code == exit_codes.BUILD_FAILED
    assert "failed (exit" in result.stderr
    assert list((tmp_path / "cache" / "venvs").iterdir()) == []  # no half-built venv is left
