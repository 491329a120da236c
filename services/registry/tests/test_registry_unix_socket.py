"""NANOFAAS_REGISTRY_SOCKET: the registry answers on a Unix socket too, and owns the file's life."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry.config import ConfigError, RegistrySettings
from nanofaas_registry.server import start_server
from nanofaas_registry.unix_socket import SocketPathError


@pytest.fixture
def socket_path() -> Iterator[str]:
    """In a short private directory: pytest's tmp_path can outgrow a socket path's 107 bytes."""
    directory = tempfile.mkdtemp(prefix="nf-uds-")
    yield f"{directory}/registry.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("registry.sock", "a Unix socket needs an absolute path (got 'registry.sock')"),
        ("/" + "r" * 107, f"a Unix socket path has at most 107 bytes (got '/{'r' * 107}')"),
    ],
)
def test_a_bad_socket_path_names_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RegistrySettings.from_env({"NANOFAAS_REGISTRY_SOCKET": value})
    assert str(raised.value) == f"NANOFAAS_REGISTRY_SOCKET: {message}"
    assert RegistrySettings.from_env({"NANOFAAS_REGISTRY_SOCKET": " /run/r.sock "}).socket == "/run/r.sock"


def test_the_process_reports_a_relative_socket_path_in_one_line_with_status_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nanofaas_registry"],
        check=False,
        env={**os.environ, "NANOFAAS_REGISTRY_SOCKET": "registry.sock"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "nanofaas-registry: NANOFAAS_REGISTRY_SOCKET: a Unix socket needs an absolute path"
        " (got 'registry.sock')"
    ]


def exists(path: str) -> bool:
    """Whether anything, a dangling socket file included, is at `path` (a quick local call)."""
    return os.path.lexists(path)


def _spec(name: str) -> types_pb2.FunctionSpec:
    return types_pb2.FunctionSpec(name=name, image="img:1")


async def test_registered_over_tcp_read_over_the_socket_file_mode_and_removal(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:  # a registry that died left its file
        dead.bind(socket_path)
    server = await start_server(RegistrySettings(port=0, metrics_port=0, socket=socket_path))
    try:
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as tcp:
            request = registry_pb2.RegisterRequest(spec=_spec("over-tcp"))
            await registry_pb2_grpc.RegistryStub(tcp).Register(request, timeout=10)
        async with grpc.aio.insecure_channel(f"unix:{socket_path}") as uds:
            answer = await health_pb2_grpc.HealthStub(uds).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            got = await registry_pb2_grpc.RegistryStub(uds).Get(
                registry_pb2.GetFunctionRequest(name="over-tcp"), timeout=10
            )
            assert got.image == "img:1"
    finally:
        await server.stop(0)
    assert not exists(socket_path)


async def test_a_socket_another_server_listens_on_is_left_alone(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(socket_path)
        live.listen()
        with pytest.raises(SocketPathError, match="another server is listening on it"):
            await start_server(RegistrySettings(port=0, metrics_port=0, socket=socket_path))
        assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)


async def test_a_socket_in_a_missing_directory_is_a_clear_error(socket_path: str) -> None:
    missing = f"{os.path.dirname(socket_path)}/no/such/dir.sock"
    with pytest.raises(SocketPathError, match=r"^cannot listen on unix:.*/no/such/dir\.sock: "):
        await start_server(RegistrySettings(port=0, metrics_port=0, socket=missing))
