"""No function process outlives the scheduler or escapes a kill, and `concurrency` bounds processes.

Real processes throughout: a scheduler-side LocalBackend in a child Python process (so
the test can SIGKILL it), the project's runtime as the function side. Pids come back
as the handlers' outputs; exits are awaited with pidfds, every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.local import LocalBackend
from nanofaas_scheduler.dispatch.local.replica import remove_stale_directories

from .conftest import make_attempt, make_spec, pid_alive, wait_pid_gone

# Starts a grandchild in a session of its own (it has left the runtime's process group),
# answers with both pids; `sleep` input then blocks the handler.
HANDLER = """
import os, subprocess, sys, time
from pathlib import Path

def escape(request, context=None):
    grandchild = subprocess.Popen(["sleep", "300"], start_new_session=True)
    if request["input"] == "sleep":
        time.sleep(300)
    return {"pid": os.getpid(), "grandchild": grandchild.pid}

def overlap(request, context=None):
    # One line per run: its pid and how many of the runs so far are still alive (itself included).
    log = Path(os.environ["RUNS_FILE"])
    with log.open("a") as out:
        out.write(f"{os.getpid()}\\n")
    alive = 0
    for line in log.read_text().split():
        try:
            state = Path(f"/proc/{line}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        alive += state not in ("Z", "X")
    with Path(os.environ["ALIVE_FILE"]).open("a") as out:
        out.write(f"{alive}\\n")
    time.sleep(300)
"""

# A scheduler stand-in: a LocalBackend in its own process (on uvloop, as the scheduler), serving
# the specs given on argv (serialized, hex), printing each outcome's output as a JSON line,
# then idling until killed.
MINI_SCHEDULER = """
import asyncio, sys, orjson, time, uvloop
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.local import LocalBackend

async def main():
    backend = LocalBackend(reap_orphans=True)  # as the scheduler's own
    for number, raw in enumerate(sys.argv[1:]):
        spec = types_pb2.FunctionSpec.FromString(bytes.fromhex(raw))
        attempt = Attempt(
            execution_id=f"e-{number}", function_name=spec.name, spec=spec,
            request=Request(b'"go"', "application/json", {}), number=1,
            deadline_epoch=time.time() + 30, timeout=30, timeout_ms=30_000, trace_id="t",
        )
        outcome = await backend.dispatch(attempt)
        print(outcome.output.decode() if outcome.output else orjson.dumps(outcome.message).decode(),
              flush=True)
    await asyncio.Event().wait()

uvloop.run(main())  # the scheduler's loop
"""


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "lifecycle.py").write_text(HANDLER)
    return tmp_path


def handler_spec(
    handler_dir: Path, name: str, function: str, env: dict[str, str] | None = None, **fields: object
) -> types_pb2.FunctionSpec:
    handler = {"PYTHONPATH": str(handler_dir), "HANDLER_MODULE": "lifecycle", "HANDLER_FUNCTION": function}
    return make_spec(name, env={**handler, **(env or {})}, **fields)


@contextlib.contextmanager
def killed_on_exit(pids: list[int]) -> Iterator[None]:
    """Whatever a failing test leaves behind is killed by pid."""
    try:
        yield
    finally:
        for pid in pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_sigkill_of_the_scheduler_takes_every_function_process_with_it(handler_dir: Path) -> None:
    warm = handler_spec(handler_dir, "warm", "escape", execution_mode=types_pb2.EXECUTION_MODE_WARM)
    # A user's own server (a command, so no lifeline): the parent-death signal stops it.
    own = handler_spec(
        handler_dir,
        "own",
        "escape",
        image="example/own:1",
        command=[sys.executable, "-m", "nanofaas_runtime"],
        execution_mode=types_pb2.EXECUTION_MODE_WARM,
    )
    scheduler = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(MINI_SCHEDULER),
        warm.SerializeToString().hex(),
        own.SerializeToString().hex(),
        stdout=asyncio.subprocess.PIPE,
    )
    pids: list[int] = []
    with killed_on_exit(pids):
        try:
            assert scheduler.stdout is not None
            for _ in range(2):
                answer = orjson.loads(await asyncio.wait_for(scheduler.stdout.readline(), 60))
                assert isinstance(answer, dict), answer
                pids += [answer["pid"], answer["grandchild"]]
            warm_runtime, warm_grandchild, own_server, _ = pids
            assert os.getsid(warm_grandchild) == warm_grandchild  # left the replica's session
            scheduler.send_signal(signal.SIGKILL)
            await asyncio.wait_for(scheduler.wait(), 30)
            for pid in (warm_runtime, warm_grandchild, own_server):
                await wait_pid_gone(pid, timeout=20)
        finally:
            if scheduler.returncode is None:
                scheduler.kill()
                await scheduler.wait()


async def test_sigkill_of_a_replica_takes_what_it_started_even_after_setsid(handler_dir: Path) -> None:
    """The dead replica's setsid() grandchild is re-parented to the scheduler, which kills it."""
    warm = handler_spec(handler_dir, "warm", "escape", execution_mode=types_pb2.EXECUTION_MODE_WARM)
    scheduler = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(MINI_SCHEDULER),
        warm.SerializeToString().hex(),
        stdout=asyncio.subprocess.PIPE,
    )
    pids: list[int] = []
    with killed_on_exit(pids):
        try:
            assert scheduler.stdout is not None
            answer = orjson.loads(await asyncio.wait_for(scheduler.stdout.readline(), 60))
            pids += [answer["pid"], answer["grandchild"]]
            os.kill(answer["pid"], signal.SIGKILL)
            for pid in pids:
                await wait_pid_gone(pid, timeout=20)
            assert scheduler.returncode is None  # the scheduler itself carries on
        finally:
            if scheduler.returncode is None:
                scheduler.kill()
                await scheduler.wait()


async def test_stopping_a_replica_kills_its_setsid_grandchild(handler_dir: Path) -> None:
    backend = LocalBackend()
    spec = handler_spec(handler_dir, "warm", "escape", execution_mode=types_pb2.EXECUTION_MODE_WARM)
    pids: list[int] = []
    with killed_on_exit(pids):
        try:
            outcome = await backend.dispatch(make_attempt(spec, b'"go"'))
            answer = orjson.loads(outcome.output)
            pids += [answer["pid"], answer["grandchild"]]
        finally:
            await backend.close()
        for pid in pids:
            await wait_pid_gone(pid)


async def test_a_timeout_kills_the_handler_and_its_setsid_grandchild(handler_dir: Path) -> None:
    """JOB: the timed-out process is gone, with what it started, before the outcome is returned."""
    backend = LocalBackend()
    spec = handler_spec(handler_dir, "job", "escape")
    try:
        outcome = await backend.dispatch(make_attempt(spec, b'"sleep"', timeout=1.5))
        assert outcome.kind is OutcomeKind.TIMEOUT
        # Every runtime process of the function, bar the standby started for the next call.
        standby = {pid for pid in _processes_of("job") if _ppid(pid) == os.getpid()}
        leftovers = _processes_of("job") - standby
        assert leftovers == set(), leftovers
    finally:
        await backend.close()


async def test_concurrency_bounds_processes_while_timed_out_replicas_drain(
    handler_dir: Path, tmp_path: Path
) -> None:
    """Finding 5: WARM, concurrency 1, handlers that never finish, sequential timeouts."""
    runs, alive = tmp_path / "runs", tmp_path / "alive"
    spec = handler_spec(
        handler_dir,
        "bounded",
        "overlap",
        execution_mode=types_pb2.EXECUTION_MODE_WARM,
        concurrency=1,
        env={"RUNS_FILE": str(runs), "ALIVE_FILE": str(alive)},
    )
    backend = LocalBackend()
    try:
        outcomes = [await backend.dispatch(make_attempt(spec, b"null", timeout=1.5)) for _ in range(5)]
    finally:
        await backend.close()
    assert {outcome.kind for outcome in outcomes} == {OutcomeKind.TIMEOUT}
    counts = [int(line) for line in alive.read_text().split()]
    assert len(counts) >= 2, "the handler should have run more than once"
    assert counts == [1] * len(counts)  # never two handler processes at once
    for pid in map(int, runs.read_text().split()):
        assert not pid_alive(pid)


def test_stale_runtime_directories_of_dead_owners_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"nanofaas-{gone.pid}-abc"
    stale_file = tmp_path / f"nanofaas-file-{gone.pid}-xyz"
    live = tmp_path / f"nanofaas-{os.getpid()}-def"
    foreign = tmp_path / "nanofaas-notours"
    for path in (stale, stale_file, live, foreign):
        path.mkdir()
    (stale / "1.sock").write_text("")
    removed = remove_stale_directories(str(tmp_path))
    assert sorted(removed) == sorted([str(stale), str(stale_file)])
    assert live.exists() and foreign.exists()
    assert not stale.exists()


def _processes_of(name: str) -> set[int]:
    marker = f"FUNCTION_NAME={name}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                    found.add(int(entry.name))
    return found


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0
