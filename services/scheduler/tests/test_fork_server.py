"""JOB attempts of the project's runtime through the function's fork server, with real processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.local import LocalBackend, fork_server
from nanofaas_scheduler.dispatch.local.lifeline import Lifeline
from nanofaas_scheduler.dispatch.local.process_tree import children
from nanofaas_scheduler.dispatch.local.replica import SocketDirectory

from .conftest import RecordingObserver, child_env, make_attempt, make_spec, pid_alive

HANDLER = """
import os, time
SEEN = []
def handle(request, context=None):
    what = request["input"]
    SEEN.append(what)
    if what == "sleep":
        with open(os.environ["PID_FILE"], "w") as out:
            out.write(str(os.getpid()))
        time.sleep(60)
    if what == "exit":
        os._exit(7)
    return {"pid": os.getpid(), "ppid": os.getppid(), "seen": SEEN,
            "execution": os.environ.get("EXECUTION_ID"), "attempt": os.environ.get("NANOFAAS_ATTEMPT")}
"""

THREADED = """
import threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
def handle(request, context=None):
    import os
    return {"pid": os.getpid(), "ppid": os.getppid()}
"""


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "handler.py").write_text(HANDLER)
    return tmp_path


def spec_for(directory: Path, **env: str) -> types_pb2.FunctionSpec:
    return make_spec(env={"PYTHONPATH": str(directory), **env})


async def call(backend: LocalBackend, spec: types_pb2.FunctionSpec, value: object, **kw: Any) -> Outcome:
    return await backend.dispatch(make_attempt(spec, orjson.dumps(value), **kw))


def output(outcome: Outcome) -> Any:
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    return orjson.loads(outcome.output)


async def test_every_attempt_is_a_fresh_child_of_one_fork_server(handler_dir: Path) -> None:
    backend = LocalBackend(job_fork_server=True)
    observer = RecordingObserver()
    backend.attach(observer)
    spec = spec_for(handler_dir)
    try:
        outputs = [output(await call(backend, spec, n, execution_id=f"e-{n}")) for n in range(4)]
    finally:
        await backend.close()
    assert len({out["pid"] for out in outputs}) == 4
    assert len({out["ppid"] for out in outputs}) == 1  # the fork server
    assert outputs[0]["ppid"] != os.getpid()
    assert [out["seen"] for out in outputs] == [[0], [1], [2], [3]]  # nothing of the one before
    assert [out["execution"] for out in outputs] == ["e-0", "e-1", "e-2", "e-3"]
    assert {out["attempt"] for out in outputs} == {"1"}
    assert [name for name, _ in observer.cold_starts] == ["fn"]  # the server's start, once
    for pid in {out["pid"] for out in outputs} | {outputs[0]["ppid"]}:
        assert not pid_alive(pid)


async def test_a_timeout_kills_the_child_and_the_server_keeps_forking(
    handler_dir: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(job_fork_server=True)
    pid_file = tmp_path / "child.pid"
    spec = spec_for(handler_dir, PID_FILE=str(pid_file))
    try:
        first = output(await call(backend, spec, 0))
        timed_out = await call(backend, spec, "sleep", timeout=1.5)
        assert timed_out.kind is OutcomeKind.TIMEOUT
        assert not pid_alive(int(pid_file.read_text()))  # killed before the attempt ended
        assert output(await call(backend, spec, 1))["ppid"] == first["ppid"]
    finally:
        await backend.close()


async def test_a_child_that_dies_is_a_crash_and_the_server_stays(handler_dir: Path) -> None:
    backend = LocalBackend(job_fork_server=True)
    spec = spec_for(handler_dir)
    try:
        first = output(await call(backend, spec, 0))
        crashed = await call(backend, spec, "exit")
        after = output(await call(backend, spec, 1))
    finally:
        await backend.close()
    assert crashed.kind is OutcomeKind.CRASH  # retried by the scheduler
    assert crashed.message.endswith("(process exited with code 7)")
    assert after["ppid"] == first["ppid"]


async def test_a_dead_fork_server_is_restarted_by_the_next_attempt_and_reported(
    handler_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = LocalBackend(job_fork_server=True)
    spec = spec_for(handler_dir)
    try:
        first = output(await call(backend, spec, 0))
        os.kill(first["ppid"], signal.SIGKILL)
        with caplog.at_level(logging.WARNING):
            # Until the death is noticed an attempt may crash (and be retried) or get a spawned
            # process; the one after that finds a new fork server.
            parents = [
                orjson.loads(o.output)["ppid"]
                for o in [await call(backend, spec, n) for n in range(3)]
                if o.kind is OutcomeKind.SUCCESS
            ]
    finally:
        await backend.close()
    new_servers = set(parents) - {first["ppid"], os.getpid()}
    assert len(new_servers) == 1, parents
    assert any("fork server" in record.getMessage() for record in caplog.records)


async def test_a_handler_that_does_not_import_fails_as_without_the_fork_server(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("raise RuntimeError('broken at import')\n")
    spec = spec_for(tmp_path)
    outcomes = []
    for enabled in (True, False):
        backend = LocalBackend(job_fork_server=enabled)
        try:
            outcomes.append(await call(backend, spec, 0))
        finally:
            await backend.close()
    forked, spawned = outcomes
    assert forked.kind is spawned.kind is OutcomeKind.CRASH
    assert forked.error_code == spawned.error_code == "START_FAILED"
    assert "broken at import" in forked.message
    assert forked.message == spawned.message


async def test_a_handler_that_starts_a_thread_at_import_gets_spawned_processes(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(THREADED)
    backend = LocalBackend(job_fork_server=True)
    spec = spec_for(tmp_path)
    try:
        out = output(await call(backend, spec, 0))
    finally:
        await backend.close()
    assert out["ppid"] == os.getpid()  # started by the backend itself, not forked


async def test_the_setting_turns_the_fork_server_off(
    handler_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fork_server.SETTING, "0")
    assert not fork_server.enabled()
    backend = LocalBackend()
    try:
        out = output(await call(backend, spec_for(handler_dir), 0))
    finally:
        await backend.close()
    assert out["ppid"] == os.getpid()
    monkeypatch.setenv(fork_server.SETTING, "1")
    assert fork_server.enabled()


async def test_a_fork_the_attempt_gave_up_on_is_stopped_when_it_is_reported(handler_dir: Path) -> None:
    sockets, lifeline = SocketDirectory(), Lifeline()
    server = await fork_server.ForkServer.start(
        [sys.executable, "-m", "nanofaas_runtime"],
        child_env(PYTHONPATH=str(handler_dir), HANDLER_MODULE="handler"),
        sockets=sockets,
        lifeline=lifeline,
        log_sink=lambda _line: None,
    )
    try:
        abandoned = asyncio.ensure_future(server.fork({}))
        await asyncio.sleep(0)  # sent, not yet answered
        abandoned.cancel()
        # Replies come in order: once the second child is known, so is the first.
        child = await server.fork({"EXECUTION_ID": "e-2"})
        await child.stop(grace=0.0)
        await asyncio.wait_for(server.drained(), 10)
        assert not children(server.process.pid)
    finally:
        await server.stop(grace=0.0)
        sockets.remove()
        lifeline.close()
