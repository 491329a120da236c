"""Per-function virtualenvs: keyed by requirements, reused, able to run the runtime (no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from nanofaas_client.cli.venvs import (
    READY_MARKER,
    VenvError,
    ensure_venv,
    requirement_lines,
    run_step,
    venv_key,
)


def test_requirement_lines_and_key() -> None:
    assert requirement_lines("# c\n\nsix==1.17.0  # pinned\n  attrs\n") == ["six==1.17.0", "attrs"]
    assert venv_key(["b", "a"], ["/s"]) == venv_key(["a", "b"], ["/s"])
    assert venv_key(["a"], ["/s"]) != venv_key(["a"], ["/t"])


def test_a_venv_is_built_once_and_runs_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOFAAS_CACHE_DIR", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install: the venv still sees nanofaas-runtime\n")
    lines: list[str] = []
    first = ensure_venv(requirements, lines.append)
    assert first.created and (first.path / READY_MARKER).is_file()
    assert first.path.parent == tmp_path / "cache" / "venvs"
    assert lines and lines[0].startswith("creating virtualenv")
    probe = subprocess.run(
        [str(first.python), "-c", "import sys, nanofaas_runtime; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(probe.stdout.strip()) == first.path
    again = ensure_venv(requirements)
    assert (again.path, again.created) == (first.path, False)
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]  # no build leftovers


def test_a_step_that_hangs_is_stopped_at_its_bound(tmp_path: Path) -> None:
    with pytest.raises(VenvError, match=r"did not finish within 0\.2 s"):
        run_step(
            [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"], 0.2, print
        )
    with pytest.raises(VenvError, match="exit 3"):
        run_step([sys.executable, "-c", "raise SystemExit(3)"], 10, print)
