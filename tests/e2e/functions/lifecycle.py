"""Handlers for the process-lifecycle and chaos tests (HANDLER_MODULE=lifecycle).

Each starts a grandchild in a session of its own (as `Popen(..., start_new_session=True)`
or a daemonising helper would), so tests can check that nothing escapes the platform's
kills, and records the pids before it blocks.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


def _escape() -> dict[str, int]:
    grandchild = subprocess.Popen(["sleep", "600"], start_new_session=True)
    return {"pid": os.getpid(), "grandchild": grandchild.pid}


def escape(request: dict[str, Any], context: Any = None) -> dict[str, int]:
    """Leave a setsid() grandchild behind and answer with both pids."""
    return _escape()


def escape_and_block(request: dict[str, Any], context: Any = None) -> dict[str, int]:
    """The first run (per COUNT_FILE) writes both pids to PID_FILE and blocks; later runs answer.

    A run killed in the middle is retried: the answer then says how often the handler ran.
    """
    count = Path(os.environ["COUNT_FILE"])
    with count.open("a") as out:
        out.write("run\n")
    runs = len(count.read_text().split())
    pids = _escape()
    if runs == 1:
        pid_file = Path(os.environ["PID_FILE"])
        pid_file.with_suffix(".tmp").write_text(f"{pids['pid']} {pids['grandchild']}")
        pid_file.with_suffix(".tmp").rename(pid_file)  # complete when it appears
        time.sleep(float(request["input"]))
    return {**pids, "runs": runs}


def overlap(request: dict[str, Any], context: Any = None) -> None:
    """Append how many of this function's runs so far are still alive (itself included), then hang.

    RUNS_FILE lists every run's pid, ALIVE_FILE gets one count per run: more than the
    function's concurrency in there means processes ran side by side.
    """
    runs = Path(os.environ["RUNS_FILE"])
    with runs.open("a") as out:
        out.write(f"{os.getpid()}\n")
    alive = 0
    for pid in runs.read_text().split():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        alive += state not in ("Z", "X")
    with Path(os.environ["ALIVE_FILE"]).open("a") as out:
        out.write(f"{alive}\n")
    time.sleep(600)
