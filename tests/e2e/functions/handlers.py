"""Python handlers the end-to-end tests deploy (HANDLER_FUNCTION picks one)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any


def echo(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return {
        "input": request["input"],
        "metadata": request.get("metadata", {}),
        "pid": os.getpid(),
        "executionId": getattr(context, "execution_id", None),
        "traceId": getattr(context, "trace_id", None),
        "functionName": getattr(context, "function_name", None),
        "deadline": getattr(context, "deadline", None),
        "env": {
            key: os.environ.get(key)
            for key in ("FUNCTION_NAME", "GREETING", "INVOCATION_TIMEOUT_MS", "EXECUTION_ID", "TRACE_ID")
        },
    }


async def async_echo(request: dict[str, Any], context: Any = None) -> Any:
    await asyncio.sleep(0)
    return {"async": True, "input": request["input"]}


def fail(request: dict[str, Any], context: Any = None) -> Any:
    raise ValueError("boom: " + str(request["input"]))


def sleep(request: dict[str, Any], context: Any = None) -> Any:
    """Record the pid, then sleep for input seconds: lets tests see a kill."""
    pid_file = os.environ.get("PID_FILE")
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    time.sleep(float(request["input"]))
    return "slept"


def reverse_bytes(request: dict[str, Any], context: Any = None) -> bytes:
    data = request["input"]
    assert isinstance(data, bytes)
    return data[::-1]


def count(request: dict[str, Any], context: Any = None) -> int:
    """Append one line per run to COUNT_FILE: proves how often the function ran."""
    path = Path(os.environ["COUNT_FILE"])
    with path.open("a") as out:
        out.write("run\n")
    return len(path.read_text().splitlines())


def chatty(request: dict[str, Any], context: Any = None) -> str:
    """Prints, so tests can find the line in the platform's log stream."""
    print(f"chatty says {request['input']}", flush=True)
    return "ok"


def log_line(request: dict[str, Any], context: Any = None) -> str:
    """Logs through `logging` (not print), so the line is one of the runtime's own JSON log lines."""
    logging.getLogger("handlers").info("handler logged %s", request["input"])
    return "logged"


def gate(request: dict[str, Any], context: Any = None) -> int:
    """Hold the invocation until the file named by input exists (at most 60 s); answer the pid.

    Another process opens the gate, so there is no event to await here: poll.
    """
    path = Path(request["input"])
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()
