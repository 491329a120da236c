"""gRPC over Unix sockets: NANOFAAS_SCHEDULER_SOCKET, unix: registry addresses, the socket file's life."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer

from .conftest import child_env, make_spec
from .test_server import FakeRegistry


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short private directory: pytest's tmp_path can outgrow a socket path's 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="nf-uds-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "NANOFAAS_SCHEDULER_SOCKET",
            "run/s.sock",
            "a Unix socket needs an absolute path (got 'run/s.sock')",
        ),
        (
            "NANOFAAS_REGISTRY_ADDRESS",
            "unix:r.sock",
            "a Unix socket needs an absolute path (got 'unix:r.sock')",
        ),
        ("NANOFAAS_REGISTRY_ADDRESS", "unix:", "a Unix socket needs an absolute path (got 'unix:')"),
        (
            "NANOFAAS_SCHEDULER_SOCKET",
            "/" + "x" * 107,
            f"a Unix socket path has at most 107 bytes (got '/{'x' * 107}')",
        ),
    ],
)
def test_a_bad_socket_path_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == f"{name}: {message}"


def test_socket_settings() -> None:
    assert Settings.from_env({}).socket == ""
    settings = Settings.from_env(
        {"NANOFAAS_SCHEDULER_SOCKET": " /run/nf/s.sock ", "NANOFAAS_REGISTRY_ADDRESS": "unix:/run/nf/r.sock"}
    )
    assert (settings.socket, settings.registry_address) == ("/run/nf/s.sock", "unix:/run/nf/r.sock")
    assert Settings.from_env({"NANOFAAS_REGISTRY_ADDRESS": "unix:///run/r.sock"}).registry_address


def test_the_process_reports_a_relative_socket_path_in_one_line_with_status_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nanofaas_scheduler"],
        check=False,
        env=child_env(NANOFAAS_SCHEDULER_SOCKET="scheduler.sock"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "nanofaas-scheduler: NANOFAAS_SCHEDULER_SOCKET: a Unix socket needs an absolute path"
        " (got 'scheduler.sock')\n"
    )


def exists(path: str) -> bool:
    """Whether anything, a dangling socket file included, is at `path` (quick local calls, these)."""
    return os.path.lexists(path)


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def read(path: str) -> str:
    return Path(path).read_text()


async def _fake_registry(path: Path) -> grpc.aio.Server:
    """A registry answering only on the Unix socket `path`, holding the function `fn`."""
    registry = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(FakeRegistry(make_spec("fn")), registry)  # type: ignore[abstract]
    registry.add_insecure_port(f"unix:{path}")
    await registry.start()
    return registry


def _settings(socket_dir: Path) -> Settings:
    return Settings(
        port=0,
        metrics_port=0,
        socket=str(socket_dir / "scheduler.sock"),
        registry_address=f"unix:{socket_dir / 'registry.sock'}",
        shutdown_grace_s=1,
    )


async def test_served_over_the_socket_dialing_the_registry_over_one_and_removed_at_stop(
    socket_dir: Path,
) -> None:
    registry = await _fake_registry(socket_dir / "registry.sock")
    settings = _settings(socket_dir)
    server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        assert stat.S_IMODE(os.stat(settings.socket).st_mode) == 0o660
        async with grpc.aio.insecure_channel(f"unix:{settings.socket}") as channel:
            # SERVING only after the first registry snapshot came in: over the registry's socket.
            updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            async with asyncio.timeout(15):
                async for update in updates:
                    if update.status == health_pb2.HealthCheckResponse.SERVING:
                        break
            updates.cancel()
            request = scheduler_pb2.InvokeRequest(
                function_name="fn",
                input=types_pb2.Payload(data=b'"over uds"', content_type="application/json"),
            )
            reply = await scheduler_pb2_grpc.SchedulerStub(channel).Invoke(request, timeout=15)
            assert reply.output.data == b'"over uds"'
        # TCP stays open alongside (health checks, tools from outside the pod).
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=15
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop()
        await registry.stop(None)
    assert not exists(settings.socket)


async def test_a_stale_socket_file_is_replaced(socket_dir: Path) -> None:
    registry = await _fake_registry(socket_dir / "registry.sock")
    settings = _settings(socket_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:  # a server that died: its file stays
        dead.bind(settings.socket)
    assert stat.S_ISSOCK(os.lstat(settings.socket).st_mode)
    server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"unix:{settings.socket}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=15
            )
            assert answer.status in (
                health_pb2.HealthCheckResponse.SERVING,
                health_pb2.HealthCheckResponse.NOT_SERVING,
            )
    finally:
        await server.stop()
        await registry.stop(None)


async def test_a_live_socket_or_another_file_is_left_alone_and_the_start_refused(socket_dir: Path) -> None:
    settings = _settings(socket_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(settings.socket)
        live.listen()
        server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
        with pytest.raises(SystemExit, match="another server is listening on it"):
            await server.start()
        await server.stop()
        assert stat.S_ISSOCK(os.lstat(settings.socket).st_mode)
    os.unlink(settings.socket)
    write(settings.socket, "not a socket")
    server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
    with pytest.raises(SystemExit, match="exists and is not a socket"):
        await server.start()
    await server.stop()
    assert read(settings.socket) == "not a socket"
