"""The gateway dialing the scheduler and registry at unix:/path addresses, and refusing bad ones."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import aiohttp
import pytest

from nanofaas_gateway.config import ConfigError, Settings

from .gateway_fakes import FakeRegistry, FakeScheduler, start_registry, start_scheduler
from .test_gateway_process import STARTUP_TIMEOUT_S, gateway_process


@pytest.fixture
def socket_dir() -> Iterator[str]:
    """A short private directory: pytest's tmp_path can outgrow a socket path's 107 bytes."""
    directory = tempfile.mkdtemp(prefix="nf-uds-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("unix:scheduler.sock", "a Unix socket needs an absolute path (got 'unix:scheduler.sock')"),
        ("unix:", "a Unix socket needs an absolute path (got 'unix:')"),
        ("unix:/" + "s" * 107, f"a Unix socket path has at most 107 bytes (got 'unix:/{'s' * 107}')"),
    ],
)
def test_a_bad_unix_address_names_the_variable(value: str, message: str) -> None:
    for name in ("NANOFAAS_SCHEDULER_ADDRESS", "NANOFAAS_REGISTRY_ADDRESS"):
        with pytest.raises(ConfigError) as raised:
            Settings.from_env({name: value})
        assert str(raised.value) == f"{name}: {message}"


def test_unix_addresses_are_kept_as_given() -> None:
    settings = Settings.from_env(
        {
            "NANOFAAS_SCHEDULER_ADDRESS": "unix:/run/nf/s.sock",
            "NANOFAAS_REGISTRY_ADDRESS": "unix:///run/r.sock",
        }
    )
    assert (settings.scheduler_address, settings.registry_address) == (
        "unix:/run/nf/s.sock",
        "unix:///run/r.sock",
    )


async def test_the_process_refuses_a_relative_unix_address_in_one_line_with_status_2() -> None:
    env = {**os.environ, "NANOFAAS_SCHEDULER_ADDRESS": "unix:run/scheduler.sock"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_gateway",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), STARTUP_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert stderr.decode().splitlines() == [
        "nanofaas-gateway: NANOFAAS_SCHEDULER_ADDRESS: a Unix socket needs an absolute path"
        " (got 'unix:run/scheduler.sock')"
    ]


async def test_ready_registers_and_invokes_over_unix_sockets(socket_dir: str) -> None:
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry = await start_registry(registry_fake, f"{socket_dir}/registry.sock")
    scheduler = await start_scheduler(scheduler_fake, f"{socket_dir}/scheduler.sock")
    overrides = {
        "NANOFAAS_REGISTRY_ADDRESS": registry.address,
        "NANOFAAS_SCHEDULER_ADDRESS": scheduler.address,
    }
    assert registry.address.startswith("unix:/") and scheduler.address.startswith("unix:/")
    try:
        async with gateway_process(overrides) as gateway, aiohttp.ClientSession() as session:
            await asyncio.wait_for(gateway.read_until("gateway listening"), STARTUP_TIMEOUT_S)
            async with session.get(gateway.base_url + "/readyz") as response:
                assert response.status == 200, await response.text()
            async with session.post(
                gateway.base_url + "/v1/functions", json={"name": "uds", "image": "img"}
            ) as response:
                assert response.status == 201
            async with session.post(
                gateway.base_url + "/v1/functions/uds:invoke", json={"input": 7}
            ) as response:
                assert response.status == 200
                assert (await response.json())["output"] == 7
            assert scheduler_fake.invokes[-1].function_name == "uds"
    finally:
        await registry.stop()
        await scheduler.stop()
