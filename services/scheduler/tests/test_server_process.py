"""ServerProcess (start a function server, wait until ready, stop it) with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from nanofaas_scheduler.dispatch.local.process import ServerProcess, StartError, free_port

from .conftest import child_env, pid_alive, python_command, wait_pid_gone

HANDLER = "def handle(request, context=None):\n    return request['input']\n"


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "handler.py").write_text(HANDLER)
    return tmp_path


def runtime_command() -> list[str]:
    """The project's runtime, started as the local backend starts it (a process, not an import)."""
    return [sys.executable, "-m", "nanofaas_runtime"]


def handler_env(handler_dir: Path) -> dict[str, str]:
    return child_env(PYTHONPATH=str(handler_dir))


async def kill_process_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# A tiny stdlib server reporting the HOST/PORT it was given, so the test sees the watchdog's env.
ENV_SERVER = """
    import http.server, json, os

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"host": os.environ["HOST"], "port": os.environ["PORT"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


async def test_start_ready_and_stop_the_runtime(handler_dir: Path) -> None:
    server = await ServerProcess.start(runtime_command(), env=handler_env(handler_dir), port=free_port())
    try:
        await server.wait_ready(30)
        assert server.alive()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/health") as response,
        ):
            assert response.status == 200
    finally:
        await server.stop()
    assert not server.alive()
    assert await server.wait_exit() == server.returncode
    assert not pid_alive(server.pid)


async def test_server_gets_port_and_loopback_host() -> None:
    server = await ServerProcess.start(python_command(ENV_SERVER), env=child_env(), port=free_port())
    try:
        await server.wait_ready(30)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/health") as response,
        ):
            assert await response.json(content_type=None) == {"host": "127.0.0.1", "port": str(server.port)}
    finally:
        await server.stop()


async def test_exit_before_ready_is_start_error_with_code_and_stderr() -> None:
    code = "import sys; sys.stderr.write('cannot bind: config missing'); sys.exit(5)"
    server = await ServerProcess.start(python_command(code), env=child_env(), port=free_port())
    with pytest.raises(
        StartError, match="exited with code 5 before becoming ready: cannot bind: config missing"
    ):
        await server.wait_ready(30)
    assert not server.alive()


async def test_runtime_with_missing_handler_is_start_error(tmp_path: Path) -> None:
    env = child_env(PYTHONPATH=str(tmp_path), HANDLER_MODULE="absent_module")
    server = await ServerProcess.start(runtime_command(), env=env, port=free_port())
    with pytest.raises(StartError, match=r"exited with code 3 .*module 'absent_module' not found"):
        await server.wait_ready(30)


async def test_never_ready_times_out_and_is_stopped() -> None:
    code = "import sys, time; sys.stderr.write('still warming up'); sys.stderr.flush(); time.sleep(600)"
    server = await ServerProcess.start(python_command(code), env=child_env(), port=free_port())
    with pytest.raises(StartError, match=r"not ready within 0\.3s: still warming up"):
        await server.wait_ready(0.3)
    assert not server.alive()
    assert await server.wait_exit() == -signal.SIGKILL


async def test_unhealthy_server_is_not_ready() -> None:
    """A server answering /health with 503 never counts as ready."""
    code = ENV_SERVER.replace("self.send_response(200)", "self.send_response(503)")
    server = await ServerProcess.start(python_command(code), env=child_env(), port=free_port())
    with pytest.raises(StartError, match="not ready within"):
        await server.wait_ready(0.5)


async def test_missing_executable_is_start_error() -> None:
    with pytest.raises(StartError, match="cannot start '/no/such/server'"):
        await ServerProcess.start(["/no/such/server"], env=child_env(), port=free_port())


async def test_wait_exit_notifies_death() -> None:
    server = await ServerProcess.start(python_command(ENV_SERVER), env=child_env(), port=free_port())
    await server.wait_ready(30)
    await kill_process_group(server.pid)
    assert await server.wait_exit() == -signal.SIGKILL
    assert not server.alive()
    await server.stop()


async def test_stop_escalates_to_sigkill_and_kills_children(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "grandchild"
    prelude = f"""
        import signal, subprocess, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(grandchild_pid)!r}, "w").write(str(grandchild.pid))
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(ENV_SERVER)
    server = await ServerProcess.start(python_command(code), env=child_env(), port=free_port())
    await server.wait_ready(30)
    await server.stop(grace=0.2)
    assert server.returncode == -signal.SIGKILL
    await wait_pid_gone(int(grandchild_pid.read_text()))


async def test_stop_uses_sigterm_first() -> None:
    server = await ServerProcess.start(python_command(ENV_SERVER), env=child_env(), port=free_port())
    await server.wait_ready(30)
    await server.stop(grace=30)
    assert server.returncode == -signal.SIGTERM


async def test_kill_process_group_of_a_gone_group_is_harmless() -> None:
    server = await ServerProcess.start(python_command("pass"), env=child_env(), port=free_port())
    assert await server.wait_exit() == 0
    await kill_process_group(server.pid)
    await server.stop()
    assert not server.alive()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_concurrent_start_ready(handler_dir: Path) -> None:
    """Several replicas (as a WARM pool starts them) come up independently."""
    servers = await asyncio.gather(
        *(
            ServerProcess.start(runtime_command(), env=handler_env(handler_dir), port=free_port())
            for _ in range(3)
        )
    )
    try:
        await asyncio.gather(*(server.wait_ready(60) for server in servers))
        assert len({server.port for server in servers}) == 3
        assert all(server.alive() for server in servers)
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


def test_aiohttp_is_not_loaded_until_an_endpoint_function_is_called() -> None:
    # ~9 MiB of resident memory that a scheduler without ENDPOINT functions never needs
    # (dispatch/endpoint_client.py); the server and both backends' modules are imported.
    check = (
        "import sys, nanofaas_scheduler.__main__, nanofaas_scheduler.server, "
        "nanofaas_scheduler.dispatch.kubernetes.backend; sys.exit('aiohttp' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", check], check=False, timeout=60).returncode == 0
