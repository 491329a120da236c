"""Handlers used by the runtime tests (PYTHONPATH=tests/handlers, HANDLER_MODULE=funcs).

Each test picks one with HANDLER_FUNCTION; they are typed like a careful user would.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import os
import sys
import threading
from typing import Any

from nanofaas_runtime.handler import Context

_lock = threading.Lock()
_active = 0


def _context_dict(context: Context | None) -> dict[str, Any] | None:
    if context is None:
        return None
    return {
        "execution_id": context.execution_id,
        "trace_id": context.trace_id,
        "function_name": context.function_name,
        "deadline": context.deadline,
        "metadata": dict(context.metadata),
        "attempt": context.attempt,
    }


def echo(request: dict[str, Any], context: Context | None = None) -> Any:
    if isinstance(request["input"], bytes):
        return request["input"] + b"!"
    return {"input": request["input"], "metadata": request["metadata"], "context": _context_dict(context)}


async def async_echo(request: dict[str, Any], context: Context | None = None) -> Any:
    await asyncio.sleep(0)
    return {"async": request["input"], "context": _context_dict(context)}


def report(request: dict[str, Any], context: Context | None = None) -> Any:
    """What the handler received, bytes input as base64 (the shape of the protocol's golden vectors)."""
    value = request["input"]
    received = (
        {"inputBase64": base64.b64encode(value).decode()} if isinstance(value, bytes) else {"input": value}
    )
    return {"request": {**received, "metadata": request["metadata"]}, "context": _context_dict(context)}


def vector(request: dict[str, Any], context: Context | None = None) -> Any:
    """Do what a golden vector's `handler` says: `returns`, `returnsBase64` or `raises` {type, message}."""
    behaviour = request["input"]
    if "raises" in behaviour:
        raise getattr(builtins, behaviour["raises"]["type"])(behaviour["raises"]["message"])
    if "returnsBase64" in behaviour:
        return base64.b64decode(behaviour["returnsBase64"])
    return behaviour["returns"]


def one_arg(request: dict[str, Any]) -> Any:
    return {"only": request["input"]}


def fail(request: dict[str, Any], context: Context | None = None) -> Any:
    raise ValueError("boom: " + str(request["input"]))


async def async_fail(request: dict[str, Any], context: Context | None = None) -> Any:
    raise KeyError("missing")


def unserializable(request: dict[str, Any], context: Context | None = None) -> Any:
    return {1, 2}


def printing(request: dict[str, Any], context: Context | None = None) -> Any:
    print("chatter on stdout")
    sys.stdout.flush()
    os.spawnlp(os.P_WAIT, "echo", "echo", "chatter from a subprocess")
    return {"printed": True}


def bytes_out(request: dict[str, Any], context: Context | None = None) -> Any:
    return b"\x00\x01raw"


def gated(request: dict[str, Any], context: Context | None = None) -> Any:
    """Report how many invocations run at once; input {"started": fifo, "release": fifo} blocks.

    The handler signals it has started by writing to one FIFO and then waits until the
    test writes to the other, so tests synchronise on events, not sleeps.
    """
    global _active
    with _lock:
        _active += 1
        seen = _active
    try:
        gate = request["input"]
        if isinstance(gate, dict):
            with open(gate["started"], "w") as started:
                started.write("x")
            with open(gate["release"]) as release:
                release.read()
        return {"active": seen}
    finally:
        with _lock:
            _active -= 1


def chatty(request: dict[str, Any], context: Context | None = None) -> Any:
    """Print like user code does: a whole line, a line built in pieces, stderr, and no final newline."""
    print("hello", request["input"])
    print("built", end="")
    print(" in pieces")
    sys.stderr.write("warning line\n")
    print("unterminated", end="")
    return {"ok": True}


async def async_chatty(request: dict[str, Any], context: Context | None = None) -> Any:
    for step in range(3):
        print(f"{request['input']} step {step}")
        await asyncio.sleep(0)
    return {"ok": request["input"]}


def loaded_modules(request: dict[str, Any], context: Context | None = None) -> Any:
    """The imported modules named `input` or below it (cold-start tests: what did the runtime load?)."""
    prefix = str(request["input"])
    return sorted(name for name in sys.modules if name == prefix or name.startswith(prefix + "."))


def invocation_environment(request: dict[str, Any], context: Context | None = None) -> Any:
    """The invocation's variables as the handler's process sees them."""
    return {name: os.environ.get(name) for name in ("EXECUTION_ID", "NANOFAAS_ATTEMPT", "TRACE_ID")}
