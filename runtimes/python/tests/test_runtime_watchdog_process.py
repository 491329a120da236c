"""The watchdog (`nanofaas-watchdog`) as a real process, driven over real HTTP.

Commands that must stay running connect to a `Gate` in the test, say who they are
(and which pids they started), and block until released: tests wait on those
events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import child_env, pid_alive, python_command, wait_pid_gone, watchdog_command

StartWatchdog = Callable[..., Awaitable[ServerProcess]]

# Connects to the gate named in the request's input, reports its name, its pid and the pid of a
# grandchild it started (in its own process group), then blocks until the test releases it.
GATED = """
    import json, os, socket, subprocess, sys
    gate = json.load(sys.stdin)["input"]
    grandchild = subprocess.Popen(["sleep", "120"])
    conn = socket.create_connection(("127.0.0.1", gate["port"]))
    conn.sendall(f"{gate['name']} {os.getpid()} {grandchild.pid}\\n".encode())
    conn.recv(16)
    grandchild.kill()
    print(json.dumps({"name": gate["name"]}))
"""


class Gate:
    """A TCP endpoint gated commands report to; each waits until `release`d (or the gate closes)."""

    def __init__(self) -> None:
        self.port = 0
        self._arrivals: asyncio.Queue[tuple[list[str], asyncio.StreamWriter]] = asyncio.Queue()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._arrived, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _arrived(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        line = await reader.readline()
        await self._arrivals.put((line.decode().split(), writer))

    def request(self, name: str) -> bytes:
        return orjson.dumps({"input": {"port": self.port, "name": name}, "metadata": {}})

    async def arrival(self, timeout: float = 30) -> tuple[str, list[int], asyncio.StreamWriter]:
        """The next command to arrive: (its name, [its pid, its grandchild's pid], its connection)."""
        (name, *pids), writer = await asyncio.wait_for(self._arrivals.get(), timeout)
        return name, [int(pid) for pid in pids], writer

    async def nobody_arrives(self, within: float = 0.5) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self._arrivals.get(), within)

    @staticmethod
    def release(writer: asyncio.StreamWriter) -> None:
        writer.write(b"go\n")
        writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    opened = Gate()
    await opened.start()
    yield opened
    await opened.close()


class Logs:
    """Collects a process's stderr lines and lets a test await one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def sink(self, line: bytes) -> None:
        self.lines.append(line.decode("utf-8", "replace"))
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 30) -> dict[str, Any]:
        """The first JSON log line whose msg contains `text`."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    entry = orjson.loads(line)
                    if text in entry.get("msg", ""):
                        return dict(entry)
                self._changed.clear()
                await self._changed.wait()


def url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


async def invoke(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    body: bytes = b'{"input": null, "metadata": {}}',
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST /invoke; (status, the JSON body)."""
    async with http.post(
        url(server) + "/invoke", data=body, headers={"Content-Type": content_type, **(headers or {})}
    ) as response:
        return response.status, orjson.loads(await response.read())


def deadline_in(milliseconds: int) -> str:
    return str(int(time.time() * 1000) + milliseconds)


def live_group_members(pgid: int) -> list[int]:
    """Processes (zombies aside) in process group `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def assert_all_gone(pids: list[int]) -> None:
    """The command, its grandchild and anything else of its process group have exited."""
    for pid in pids:
        await wait_pid_gone(pid, timeout=10)
        assert not pid_alive(pid)
    assert live_group_members(pids[0]) == []  # the command led its own group


async def test_health_answers_at_once_and_other_routes_are_refused(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(python_command("print(1)"))
    async with http.get(url(server) + "/health") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get(url(server) + "/invoke") as response:
        assert response.status == 405
    async with http.get(url(server) + "/elsewhere") as response:
        assert response.status == 404


async def test_a_request_meant_for_another_pod_is_refused_before_the_command_runs(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED), NANOFAAS_POD_UID="uid-of-this-pod")
    async with http.post(
        url(server) + "/invoke", data=gate.request("misdirected"), headers={"X-Pod-Uid": "uid-of-another-pod"}
    ) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "CRASH"
    await gate.nobody_arrives()


async def test_command_environment_is_ours_plus_the_invocation_headers(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    code = """
        import json, os
        print(json.dumps({k: v for k, v in os.environ.items() if k not in ("PATH", "LANG", "LC_CTYPE")}))
    """
    server = await start_watchdog(
        python_command(code),
        MY_SETTING="kept",
        FUNCTION_NAME="from-env",
        EXECUTION_ID="stale",  # a per-invocation variable never leaks from the watchdog's own environment
        TRACE_ID="stale",
    )
    status, env = await invoke(
        http,
        server,
        headers={
            "X-Execution-Id": "e-7",
            "X-Trace-Id": "t-7",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "X-Function-Name": "fn-7",
            "X-Attempt": "2",
            "X-Deadline-Ms": deadline_in(30_000),
        },
    )
    assert status == 200
    deadline_ms = int(env.pop("NANOFAAS_DEADLINE_MS"))
    assert 0 < deadline_ms - time.time() * 1000 <= 30_000  # the absolute deadline of the request
    assert env.pop("PORT") and env.pop("HOST") == "127.0.0.1"  # ServerProcess started us with them
    assert env == {
        "MY_SETTING": "kept",
        "FUNCTION_NAME": "fn-7",
        "EXECUTION_ID": "e-7",
        "TRACE_ID": "t-7",
        "TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "NANOFAAS_ATTEMPT": "2",
    }
    status, env = await invoke(http, server)  # no headers: no per-invocation variables
    assert status == 200
    assert "EXECUTION_ID" not in env and "TRACE_ID" not in env and "NANOFAAS_ATTEMPT" not in env
    assert env["FUNCTION_NAME"] == "from-env"
    left_ms = int(env["NANOFAAS_DEADLINE_MS"]) - time.time() * 1000
    assert 25_000 < left_ms <= 30_000  # the default budget


async def test_octet_stream_body_reaches_stdin_as_raw_bytes(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(python_command("import sys; print(list(sys.stdin.buffer.read()))"))
    status, output = await invoke(http, server, b"\x00\x01\xff", "application/octet-stream")
    assert (status, output) == (200, [0, 1, 255])


async def test_file_mode_with_the_mode_from_the_environment(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    code = """
        import json, os
        with open(os.environ["INPUT_FILE"]) as f:
            request = json.load(f)
        with open(os.environ["OUTPUT_FILE"], "w") as f:
            json.dump({"double": request["input"] * 2}, f)
    """
    command = [sys.executable, "-m", "nanofaas_runtime.watchdog", "--", *python_command(code)]
    server = await ServerProcess.start(command, env=child_env(NANOFAAS_RUNTIME_MODE="file"), port=free_port())
    try:
        await server.wait_ready(30)
        assert await invoke(http, server, b'{"input": 21}') == (200, {"double": 42})
    finally:
        await server.stop()


MALFORMED = [
    (b"{not json", "application/json", {}, 400, "request body is not valid JSON"),
    (b'{"input": 1, "metadata": {"k": 1}}', "application/json", {}, 400, "metadata: must be an object"),
    (b"{}", "text/plain", {}, 415, "unsupported Content-Type 'text/plain'"),
    (b"{}", "application/json", {"X-Deadline-Ms": "soon"}, 400, "X-Deadline-Ms: must be unix epoch"),
    (b"{}", "application/json", {"X-Attempt": "-1"}, 400, "X-Attempt: must be a non-negative integer"),
]


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_requests_are_refused_without_running_the_command(
    start_watchdog: StartWatchdog,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    case: tuple[bytes, str, dict[str, str], int, str],
) -> None:
    body, content_type, headers, status, message = case
    ran = tmp_path / "ran"
    server = await start_watchdog(python_command(f"open({str(ran)!r}, 'w').close(); print(1)"))
    got_status, error = await invoke(http, server, body, content_type, headers)
    assert got_status == status
    assert error["error"]["message"].startswith(message)
    assert not ran.exists()


async def test_a_deadline_already_past_is_a_timeout_without_running_the_command(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    server = await start_watchdog(python_command(f"open({str(ran)!r}, 'w').close(); print(1)"))
    status, error = await invoke(http, server, headers={"X-Deadline-Ms": deadline_in(-1)})
    assert status == 504
    assert error == {
        "error": {"code": "TIMEOUT", "message": "timed out: X-Deadline-Ms had passed on arrival"}
    }
    assert not ran.exists()


async def test_without_a_deadline_header_the_budget_is_invocation_timeout_ms(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(python_command("import time; time.sleep(120)"), INVOCATION_TIMEOUT_MS="300")
    assert await invoke(http, server) == (
        504,
        {"error": {"code": "TIMEOUT", "message": "timed out after 0.3s"}},
    )


async def test_timeout_leaves_no_process_of_the_command_behind(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED))
    call = asyncio.create_task(
        invoke(http, server, gate.request("slow"), headers={"X-Deadline-Ms": deadline_in(2000)})
    )
    _, pids, _ = await gate.arrival()  # the command and its grandchild are running; nobody releases them
    status, error = await call
    assert status == 504
    assert error["error"]["code"] == "TIMEOUT"
    assert error["error"]["message"].startswith("timed out after")
    await assert_all_gone(pids)


async def test_invocations_run_concurrently_up_to_the_limit_then_wait(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED), NANOFAAS_WATCHDOG_CONCURRENCY="2")
    calls = {name: asyncio.create_task(invoke(http, server, gate.request(name))) for name in ("a", "b", "c")}
    first, _, first_conn = await gate.arrival()
    second, _, second_conn = await gate.arrival()  # two commands run at the same time
    await gate.nobody_arrives()  # the third waits for a slot
    gate.release(first_conn)
    assert await calls[first] == (200, {"name": first})
    third, _, third_conn = await gate.arrival()  # it got the freed slot
    assert {first, second, third} == {"a", "b", "c"}
    gate.release(second_conn)
    gate.release(third_conn)
    assert await calls[second] == (200, {"name": second})
    assert await calls[third] == (200, {"name": third})


async def test_waiting_for_a_slot_counts_against_the_deadline(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED), NANOFAAS_WATCHDOG_CONCURRENCY="1")
    busy = asyncio.create_task(invoke(http, server, gate.request("busy")))
    _, _, conn = await gate.arrival()
    status, error = await invoke(
        http, server, gate.request("late"), headers={"X-Deadline-Ms": deadline_in(300)}
    )
    assert status == 504
    assert error["error"]["message"].startswith("timed out after")
    assert error["error"]["message"].endswith("waiting for one of 1 slots")
    gate.release(conn)
    assert await busy == (200, {"name": "busy"})


async def test_single_use_serves_one_invocation_then_exits_0(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED), NANOFAAS_SINGLE_USE="1")
    first = asyncio.create_task(invoke(http, server, gate.request("only")))
    _, _, conn = await gate.arrival()
    status, error = await invoke(http, server, gate.request("second"))
    assert (status, error["error"]["code"]) == (503, "CRASH")  # retried elsewhere by the caller
    gate.release(conn)
    assert await first == (200, {"name": "only"})
    assert await asyncio.wait_for(server.wait_exit(), 30) == 0


async def test_sigterm_stops_accepting_and_lets_running_invocations_finish(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    logs = Logs()
    server = await start_watchdog(python_command(GATED), log_sink=logs.sink)
    running = asyncio.create_task(invoke(http, server, gate.request("running")))
    _, pids, conn = await gate.arrival()
    os.kill(server.pid, signal.SIGTERM)
    await logs.wait_for("Shutting down")
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):  # the listening socket is closed
            await invoke(fresh, server)
    assert all(pid_alive(pid) for pid in pids)  # the running command was left alone
    gate.release(conn)
    assert await running == (200, {"name": "running"})
    assert await asyncio.wait_for(server.wait_exit(), 30) == 0


async def test_sigterm_kills_what_outlives_the_grace_and_exits_0(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession, gate: Gate
) -> None:
    server = await start_watchdog(python_command(GATED), NANOFAAS_WATCHDOG_GRACE_MS="200")
    running = asyncio.create_task(invoke(http, server, gate.request("stuck")))
    _, pids, _ = await gate.arrival()  # never released
    os.kill(server.pid, signal.SIGTERM)
    status, error = await running
    assert (status, error) == (
        503,
        {"error": {"code": "CRASH", "message": "the watchdog shut down before the command finished"}},
    )
    await assert_all_gone(pids)
    assert await asyncio.wait_for(server.wait_exit(), 30) == 0


async def test_command_stderr_joins_the_log_stream_with_the_execution_id(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    logs = Logs()
    code = """
        import sys
        sys.stderr.write("plain line\\n")
        sys.stderr.write('{"msg": "already json"}\\n')
        print("null")
    """
    server = await start_watchdog(python_command(code), log_sink=logs.sink, FUNCTION_NAME="fn")
    assert await invoke(http, server, headers={"X-Execution-Id": "e-log"}) == (200, None)
    plain = await logs.wait_for("plain line")
    assert plain["service"] == "watchdog"
    assert (plain["executionId"], plain["functionName"], plain["stream"]) == ("e-log", "fn", "stderr")
    assert await logs.wait_for("already json") == {"msg": "already json"}  # passed through unchanged


async def test_serves_an_inherited_listening_socket(http: aiohttp.ClientSession) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = child_env(NANOFAAS_LISTEN_FD=str(listener.fileno()))
        command = watchdog_command(
            "stdio", python_command("import os; print(int('NANOFAAS_LISTEN_FD' in os.environ))")
        )
        server = await ServerProcess.start(command, env=env, port=port, pass_fds=[listener.fileno()])
        try:
            await server.wait_ready(30)
            assert await invoke(http, server) == (200, 0)  # the socket is ours, not the command's
        finally:
            await server.stop()


async def _run_to_exit(argv: list[str], **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=child_env(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


WATCHDOG = [sys.executable, "-m", "nanofaas_runtime.watchdog"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "no mode: give --mode or set NANOFAAS_RUNTIME_MODE"),
        (["--mode", "http", "--", "true"], {}, "unknown mode 'http'"),
        (["--mode", "stdio"], {}, "no COMMAND given"),
        (["--mode"], {}, "--mode needs a value"),
        (["--verbose", "true"], {"NANOFAAS_RUNTIME_MODE": "stdio"}, "unknown option '--verbose'"),
        (
            ["--mode=file", "true"],
            {"NANOFAAS_WATCHDOG_CONCURRENCY": "0"},
            "NANOFAAS_WATCHDOG_CONCURRENCY: must be",
        ),
        (
            ["--mode=file", "true"],
            {"PORT": "http"},
            "PORT: must be an integer between 0 and 65535 (got 'http')",
        ),
    ],
)
async def test_bad_usage_exits_2_with_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    code, stdout, stderr = await _run_to_exit([*WATCHDOG, *args], **env)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("nanofaas-watchdog: ")
    assert message in stderr


async def test_console_script_prints_usage() -> None:
    script = Path(sys.executable).parent / "nanofaas-watchdog"
    code, stdout, _ = await _run_to_exit([str(script), "--help"])
    assert (code, stdout) == (0, "usage: nanofaas-watchdog --mode stdio|file [--] COMMAND [ARGS...]\n")


async def test_command_arguments_that_look_like_options_are_the_commands(
    start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(
        [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", "--mode", "-h"]
    )
    assert await invoke(http, server) == (200, ["--mode", "-h"])
