"""The local backend with real function processes (no gRPC, no registry)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.local import LocalBackend
from nanofaas_scheduler.dispatch.local.command import argv_for, is_runtime_image

from .conftest import RecordingObserver, make_attempt, make_spec

HANDLER = """
import os, time
def handle(request, context=None):
    if request["input"] == "sleep":
        time.sleep(60)
    if request["input"] == "nap":
        time.sleep(1.4)
    return {"pid": os.getpid(), "input": request["input"], "trace": context.trace_id,
            "execution": os.environ.get("EXECUTION_ID")}
"""


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "handler.py").write_text(HANDLER)
    return tmp_path


def invocation(spec: types_pb2.FunctionSpec, value: object, timeout: float = 20.0) -> Attempt:
    return make_attempt(spec, orjson.dumps(value), timeout=timeout)


def runtime_spec(handler_dir: Path, **fields: Any) -> types_pb2.FunctionSpec:
    return make_spec(env={"PYTHONPATH": str(handler_dir)}, **fields)


def test_runtime_image_names() -> None:
    assert is_runtime_image("nanofaas/python-runtime")
    assert is_runtime_image("nanofaas/python-runtime:1.2")
    assert is_runtime_image("ghcr.io/acme/nanofaas/python-runtime:latest")
    assert is_runtime_image("nanofaas/python-runtime@sha256:abc")
    assert not is_runtime_image("nanofaas/python-runtime-extra:1")
    assert not is_runtime_image("other/image:1")
    assert argv_for(make_spec(image="x", runtime_command="a 'b c' ;"))[1:] == ["b c", ";"]


async def test_job_uses_a_fresh_process_each_time(handler_dir: Path) -> None:
    backend = LocalBackend()
    spec = runtime_spec(handler_dir)
    invocations = [invocation(spec, n) for n in range(4)]
    try:
        outcomes = [await backend.dispatch(i) for i in invocations]  # from the second on: standbys
    finally:
        await backend.close()
    assert all(outcome.kind is OutcomeKind.SUCCESS for outcome in outcomes), outcomes
    outputs = [orjson.loads(outcome.output) for outcome in outcomes]
    assert [out["input"] for out in outputs] == [0, 1, 2, 3]
    assert len({out["pid"] for out in outputs}) == 4
    assert [out["execution"] for out in outputs] == [i.execution_id for i in invocations]
    assert all(out["trace"] == "t-1" for out in outputs)
    for out in outputs:  # every process, the standby started ahead included, is gone
        with pytest.raises(ProcessLookupError):
            os.kill(out["pid"], 0)


async def test_warm_pool_reuses_and_replaces_dead_replica(handler_dir: Path) -> None:
    backend = LocalBackend()
    events = RecordingObserver()
    backend.attach(events)
    spec = runtime_spec(handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, concurrency=1)
    try:
        first = orjson.loads((await backend.dispatch(invocation(spec, 1))).output)
        second = orjson.loads((await backend.dispatch(invocation(spec, 2))).output)
        assert first["pid"] == second["pid"]
        assert events.replicas[spec.name] == 1
        os.kill(first["pid"], signal.SIGKILL)
        outcome = await backend.dispatch(invocation(spec, 3))
        if outcome.kind is OutcomeKind.CRASH:  # died between health and request: the scheduler retries
            outcome = await backend.dispatch(invocation(spec, 3))
        third = orjson.loads(outcome.output)
        assert third["pid"] != first["pid"]
        await backend.function_removed(spec.name)
        assert events.replicas[spec.name] == 0
    finally:
        await backend.close()


async def test_warm_deadline_keeps_a_replica_that_answers_within_the_grace(handler_dir: Path) -> None:
    """Past its deadline an attempt is TIMEOUT at once; its replica is kept if it answers soon after."""
    backend = LocalBackend()
    spec = runtime_spec(handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, concurrency=1)
    try:
        first = orjson.loads((await backend.dispatch(invocation(spec, 1))).output)
        late = await backend.dispatch(invocation(spec, "nap", timeout=1.0))  # answers 0.4 s late
        assert late.kind is OutcomeKind.TIMEOUT
        # One replica: this waits until the late answer came and the replica was given back.
        again = orjson.loads((await backend.dispatch(invocation(spec, 2))).output)
        assert again["pid"] == first["pid"]
    finally:
        await backend.close()


async def test_warm_deadline_recycles_a_replica_that_stays_busy(handler_dir: Path) -> None:
    backend = LocalBackend()
    spec = runtime_spec(handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, concurrency=1)
    try:
        first = orjson.loads((await backend.dispatch(invocation(spec, 1))).output)
        stuck = await backend.dispatch(invocation(spec, "sleep", timeout=1.0))
        assert stuck.kind is OutcomeKind.TIMEOUT
        again = orjson.loads((await backend.dispatch(invocation(spec, 2))).output)
        assert again["pid"] != first["pid"]
    finally:
        await backend.close()


async def test_warm_attempt_cancelled_stops_its_busy_replica(handler_dir: Path) -> None:
    """The caller gone mid-attempt: the replica (still running the handler) is not reused."""
    backend = LocalBackend()
    spec = runtime_spec(handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, concurrency=1)
    try:
        first = orjson.loads((await backend.dispatch(invocation(spec, 1))).output)
        attempt = asyncio.ensure_future(backend.dispatch(invocation(spec, "sleep")))
        done, _ = await asyncio.wait({attempt}, timeout=0.5)
        assert not done
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        again = orjson.loads((await backend.dispatch(invocation(spec, 2))).output)
        assert again["pid"] != first["pid"]
    finally:
        await backend.close()


async def test_timeout_kills_job_process(handler_dir: Path) -> None:
    backend = LocalBackend()
    spec = runtime_spec(handler_dir)
    try:
        outcome = await backend.dispatch(invocation(spec, "sleep", timeout=1.5))
    finally:
        await backend.close()
    assert outcome.kind is OutcomeKind.TIMEOUT


async def test_stdio_command_and_unrunnable_image(tmp_path: Path) -> None:
    backend = LocalBackend()
    script = tmp_path / "echo.py"
    script.write_text("import json, sys; print(json.dumps(json.load(sys.stdin)['input'] * 2))")
    spec = make_spec(
        image="any", command=[sys.executable, str(script)], runtime_mode=types_pb2.RUNTIME_MODE_STDIO
    )
    try:
        doubled = await backend.dispatch(invocation(spec, 21))
        unrunnable = await backend.dispatch(invocation(make_spec(image="some/image:1"), 1))
        missing = await backend.dispatch(invocation(make_spec(image="x", command=["/nonexistent/bin"]), 1))
    finally:
        await backend.close()
    assert doubled.kind is OutcomeKind.SUCCESS and orjson.loads(doubled.output) == 42
    assert unrunnable.kind is OutcomeKind.FUNCTION_ERROR
    assert unrunnable.error_code == "UNRUNNABLE_FUNCTION"
    assert missing.kind is OutcomeKind.CRASH
    assert missing.error_code == "START_FAILED"
