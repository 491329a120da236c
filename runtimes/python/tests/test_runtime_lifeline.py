"""No process outlives the watchdog's parent, and a setsid() does not escape a timeout or a shutdown.

Commands report their pids to a `Gate` (see test_runtime_watchdog_process) and block; every
wait is on an event (a gate arrival, a pidfd), bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from nanofaas_runtime.process_tree import descendants, kill_tree
from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import child_env, pid_alive, python_command, wait_pid_gone, watchdog_command
from .test_runtime_watchdog_process import Gate, StartWatchdog, deadline_in, invoke

# Like GATED, but the grandchild leaves the command's process group and session (setsid), as a
# handler's `Popen(..., start_new_session=True)` or a daemonising helper does.
ESCAPING = """
    import json, os, socket, subprocess, sys
    gate = json.load(sys.stdin)["input"]
    grandchild = subprocess.Popen(["sleep", "120"], start_new_session=True)
    conn = socket.create_connection(("127.0.0.1", gate["port"]))
    conn.sendall(f"{gate['name']} {os.getpid()} {grandchild.pid}\\n".encode())
    conn.recv(16)
    print(json.dumps({"name": gate["name"]}))
"""


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    opened = Gate()
    await opened.start()
    yield opened
    await opened.close()


def session_of(pid: int) -> int:
    return os.getsid(pid)


async def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        await wait_pid_gone(pid, timeout=10)
        assert not pid_alive(pid)


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_timeout_kills_a_grandchild_that_called_setsid(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(ESCAPING))
    call = asyncio.create_task(
        invoke(http, server, gate.request("slow"), headers={"X-Deadline-Ms": deadline_in(1500)})
    )
    _, pids, _ = await gate.arrival()
    try:
        assert session_of(pids[1]) == pids[1] != session_of(pids[0])  # it really left
        status, error = await call
        assert (status, error["error"]["code"]) == (504, "TIMEOUT")
        await assert_gone(pids)
    finally:
        kill_leftovers(pids)


async def test_sigterm_shutdown_kills_a_grandchild_that_called_setsid(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(ESCAPING), NANOFAAS_WATCHDOG_GRACE_MS="200")
    running = asyncio.create_task(invoke(http, server, gate.request("stuck")))
    _, pids, _ = await gate.arrival()
    try:
        os.kill(server.pid, signal.SIGTERM)
        status, _ = await running
        assert status == 503
        assert await asyncio.wait_for(server.wait_exit(), 30) == 0
        await assert_gone(pids)
    finally:
        kill_leftovers(pids)


async def test_closing_the_lifeline_takes_the_watchdog_and_everything_it_started(
    http: aiohttp.ClientSession, gate: Gate
) -> None:
    """The parent's end of the pipe closes (as when the scheduler is SIGKILLed): all of it goes."""
    read_end, write_end = os.pipe()
    server = await ServerProcess.start(
        watchdog_command("stdio", python_command(ESCAPING)),
        env=child_env(NANOFAAS_LIFELINE_FD=str(read_end)),
        port=free_port(),
        pass_fds=(read_end,),
    )
    os.close(read_end)
    pids: list[int] = []
    try:
        await server.wait_ready(30)
        call = asyncio.create_task(invoke(http, server, gate.request("orphan")))
        _, pids, _ = await gate.arrival()
        os.close(write_end)
        write_end = -1
        assert await asyncio.wait_for(server.wait_exit(), 30) == 0
        await assert_gone(pids)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    finally:
        if write_end >= 0:
            os.close(write_end)
        kill_leftovers(pids)
        await server.stop()


async def test_without_a_lifeline_the_watchdog_keeps_serving(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(python_command("import sys; sys.stdin.read(); print('1')"))
    assert await invoke(http, server) == (200, 1)


def test_the_tree_holds_a_setsid_grandchild_and_kill_tree_kills_it() -> None:
    """descendants() by parentage: a grandchild in its own session is still found and killed."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; "
            "c = subprocess.Popen(['sleep', '120'], start_new_session=True); "
            "print(c.pid, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    try:
        assert grandchild in descendants(parent.pid)
        assert grandchild in descendants(os.getpid())
        assert kill_tree(parent.pid, include_root=False) == {grandchild}
        assert parent.poll() is None  # the root was left alone
    finally:
        kill_tree(parent.pid, include_root=True)
        parent.wait(timeout=10)
    for _ in range(2):
        try:
            os.waitpid(grandchild, os.WNOHANG)
        except ChildProcessError:
            break
    assert not pid_alive(grandchild)
