"""The fork server (`--mode fork-server`) as a real process: a fresh, isolated child per invocation.

The test plays the platform's part: it holds the control socket and the lifeline,
binds a listening Unix socket per invocation and POSTs to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nanofaas_runtime.fork_server import CONTROL_FD_ENV
from nanofaas_runtime.lifeline import LIFELINE_FD_ENV

from .support import handler_env, pid_alive, runtime_command, wait_pid_gone
from .test_runtime_tracing_process import (
    TRACEPARENT,
    OtlpReceiver,
    assert_one_invoke_span,
    receiver,  # noqa: F401  (the OTLP sink fixture)
)

HANDLERS = Path(__file__).resolve().parent / "handlers"
WAIT_S = 10.0


class Parent:
    """The platform's side of one fork server process."""

    def __init__(
        self, process: subprocess.Popen[bytes], control: socket.socket, lifeline: int, tmp: Path
    ) -> None:
        self.process = process
        self.control = control
        self.lifeline = lifeline
        self._tmp = tmp
        self._next = 0
        self.exits: dict[int, int] = {}

    def receive(self) -> dict[str, Any]:
        message = orjson.loads(self.control.recv(65536))
        assert isinstance(message, dict)
        if "exited" in message:
            self.exits[message["exited"]] = message["code"]
        return message

    def wait_exit(self, pid: int) -> int:
        while pid not in self.exits:
            self.receive()
        return self.exits[pid]

    def fork(self, **env: str) -> tuple[int, str]:
        """A child serving one invocation on a new socket: (its pid, the socket's path)."""
        self._next += 1
        path = str(self._tmp / f"child-{self._next}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        socket.send_fds(self.control, [orjson.dumps({"fork": self._next, "env": env})], [listener.fileno()])
        listener.close()
        while True:
            reply = self.receive()
            if reply.get("id") == self._next:
                assert "pid" in reply, reply
                return int(reply["pid"]), path


def start_parent(tmp: Path, function: str, module: str = "forked", **extra: str) -> tuple[Parent, str]:
    """(the parent, its first message) once it said ready or unsafe; the caller stops it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    env = handler_env(
        HANDLERS,
        module,
        function,
        **{CONTROL_FD_ENV: str(theirs.fileno()), LIFELINE_FD_ENV: str(read_end)},
        **extra,
    )
    process = subprocess.Popen(
        runtime_command("fork-server"),
        env=env,
        pass_fds=(theirs.fileno(), read_end),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    theirs.close()
    os.close(read_end)
    ours.settimeout(WAIT_S)
    parent = Parent(process, ours, write_end, tmp)
    try:
        first = parent.receive()
    except (TimeoutError, orjson.JSONDecodeError):
        first = {}
    return parent, next(iter(first), "")


def stop_parent(parent: Parent) -> None:
    if parent.process.poll() is None:
        parent.process.send_signal(signal.SIGTERM)
        try:
            parent.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(parent.process.pid, signal.SIGKILL)
            parent.process.wait(WAIT_S)
    parent.control.close()
    if parent.lifeline >= 0:
        os.close(parent.lifeline)


@pytest.fixture
async def parent_of(tmp_path: Path) -> AsyncIterator[Callable[[str], Parent]]:
    parents: list[Parent] = []

    def start(function: str) -> Parent:
        parent, first = start_parent(tmp_path, function)
        parents.append(parent)
        assert first == "ready"
        return parent

    yield start
    for parent in parents:
        stop_parent(parent)


async def invoke(path: str, execution_id: str = "e-1", **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as session,
        session.post(
            "http://localhost/invoke",
            json={"input": None, "metadata": {}},
            headers={"X-Execution-Id": execution_id, "X-Attempt": "1", **headers},
            timeout=aiohttp.ClientTimeout(total=WAIT_S),
        ) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def invoke_child(parent: Parent, execution_id: str = "e-1", **env: str) -> tuple[int, Any, int]:
    """Fork, invoke, wait for the child's exit: (HTTP status, body, the child's exit code)."""
    pid, path = parent.fork(EXECUTION_ID=execution_id, **env)
    status, body = await invoke(path, execution_id)
    return status, body, await asyncio.to_thread(parent.wait_exit, pid)


async def test_a_module_global_changed_by_one_invocation_is_not_seen_by_the_next(
    parent_of: Callable[[str], Parent],
) -> None:
    parent = parent_of("count")
    answers = [await invoke_child(parent, f"e-{i}") for i in range(3)]
    assert answers == [(200, 1, 0)] * 3


async def test_every_child_draws_different_random_numbers(parent_of: Callable[[str], Parent]) -> None:
    parent = parent_of("draw")
    draws = [(await invoke_child(parent))[1] for _ in range(4)]
    assert len(set(draws)) == 4


async def test_a_child_is_fresh_in_its_own_session_with_the_invocation_environment(
    parent_of: Callable[[str], Parent],
) -> None:
    parent = parent_of("identity")
    status, body, code = await invoke_child(parent, "exec-7", NANOFAAS_ATTEMPT="2", TRACE_ID="t-1")
    assert (status, code) == (200, 0)
    assert body["ppid"] == parent.process.pid
    assert body["pgid"] == body["sid"] == body["pid"]  # its own session: the tree kill covers it
    expected = {"EXECUTION_ID": "exec-7", "NANOFAAS_ATTEMPT": "2", "TRACE_ID": "t-1", "TRACEPARENT": None}
    assert body["env"] == expected
    assert body["executionId"] == "exec-7"


async def test_a_child_inherits_no_descriptor_of_the_parent_beyond_stdio(
    parent_of: Callable[[str], Parent],
) -> None:
    parent = parent_of("descriptors")
    pid, path = parent.fork()
    # The parent's descriptors, read while the child is alive (it blocks on accept meanwhile).
    theirs = {}
    for name in os.listdir(f"/proc/{parent.process.pid}/fd"):
        try:
            theirs[name] = os.readlink(f"/proc/{parent.process.pid}/fd/{name}")
        except OSError:
            continue
    status, ours = await invoke(path)
    assert status == 200
    assert await asyncio.to_thread(parent.wait_exit, pid) == 0
    shared = {fd for fd, target in ours.items() if target in set(theirs.values())}
    assert shared <= {"0", "1", "2"}, {fd: ours[fd] for fd in shared}
    assert set(theirs) - {"0", "1", "2"}, "the parent holds its control socket, lifeline and wake-up pipe"


@pytest.mark.parametrize("function", ["exit_abruptly", "segfault"])
async def test_a_child_that_dies_mid_invocation_leaves_the_parent_serving(
    parent_of: Callable[[str], Parent], function: str
) -> None:
    parent = parent_of(function)
    pid, path = parent.fork()
    with pytest.raises(aiohttp.ClientError):
        await invoke(path)  # the connection ends without an answer: the platform's CRASH
    code = await asyncio.to_thread(parent.wait_exit, pid)
    assert code == (9 if function == "exit_abruptly" else -signal.SIGSEGV)
    assert parent.process.poll() is None
    pid, _ = parent.fork()  # still forking
    assert pid_alive(pid)


async def test_a_kill_request_takes_the_child_and_the_lifeline_takes_everything(
    parent_of: Callable[[str], Parent], tmp_path: Path
) -> None:
    parent = parent_of("identity")
    first, _ = parent.fork()
    parent.control.send(orjson.dumps({"kill": first}))
    assert await asyncio.to_thread(parent.wait_exit, first) == -signal.SIGKILL
    second, _ = parent.fork()
    os.close(parent.lifeline)  # the platform is gone
    parent.lifeline = -1
    await wait_pid_gone(second, WAIT_S)
    await asyncio.to_thread(parent.process.wait, WAIT_S)
    assert parent.process.returncode == 0


def test_a_handler_module_that_starts_a_thread_is_refused(tmp_path: Path) -> None:
    parent, first = start_parent(tmp_path, "handle", module="threaded")
    try:
        assert first == "unsafe"
        assert parent.process.wait(WAIT_S) == 5
    finally:
        stop_parent(parent)


def test_a_handler_that_cannot_be_imported_fails_like_any_mode(tmp_path: Path) -> None:
    parent, first = start_parent(tmp_path, "handle", module="no_such_module")
    try:
        assert first == ""  # the control socket closed without a word
        assert parent.process.wait(WAIT_S) == 3
    finally:
        stop_parent(parent)


async def test_with_tracing_on_the_parent_stays_single_threaded_and_each_child_exports(
    tmp_path: Path,
    receiver: OtlpReceiver,  # noqa: F811
) -> None:
    parent, first = start_parent(
        tmp_path, "echo", module="funcs", **receiver.tracing_env(FUNCTION_NAME="traced-fn")
    )
    try:
        assert first == "ready"  # the SDK and exporter are imported, no provider (thread) made
        pid, path = parent.fork(EXECUTION_ID="exec-f", TRACEPARENT=TRACEPARENT)
        status, _ = await invoke(path, "exec-f", traceparent=TRACEPARENT)
        assert status == 200
        assert await asyncio.to_thread(parent.wait_exit, pid) == 0
    finally:
        stop_parent(parent)
    assert_one_invoke_span(receiver, "exec-f")  # exported by the child before it exited


async def test_a_parent_killed_outright_takes_its_children_along(parent_of: Callable[[str], Parent]) -> None:
    parent = parent_of("identity")
    child, _ = parent.fork()
    os.kill(parent.process.pid, signal.SIGKILL)
    await wait_pid_gone(child, WAIT_S)  # the parent-death signal, as nobody could kill it
    await asyncio.to_thread(parent.process.wait, WAIT_S)
