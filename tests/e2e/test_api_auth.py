"""API authentication on, against the three real services (issue 17, findings 2 and 6; docs/security.md).

One platform with NANOFAAS_API_TOKENS_FILE: REST and both gRPC APIs refuse calls
without an accepted bearer token (health and readiness stay open), the file is
rotated while everything runs, an operator may end a queued execution without a
completion token, and no token is ever written to a log.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aiohttp
import grpc
import pytest
from nanofaas_client import AsyncClient, Unauthenticated
from nanofaas_client.grpc_client import GrpcClient

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2

from .conftest import Platform, start_platform, stop_platform
from .helpers import python_spec, wait_terminal

WAIT_S = 30.0
PLATFORM_TOKEN = "e2e-platform-token-1"
OPS_TOKEN = "e2e-ops-token-1"


def write_tokens(path: Path, *tokens: str) -> None:
    """Replace the file at once, as a Secret volume update does (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text("# the platform's own token first\n" + "".join(f"{token}\n" for token in tokens))
    os.replace(staged, path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[Platform, Path]]:
    tokens = tmp_path / "api-tokens"
    write_tokens(tokens, PLATFORM_TOKEN, OPS_TOKEN)
    platform = await asyncio.to_thread(
        start_platform, tmp_path / "logs", NANOFAAS_API_TOKENS_FILE=str(tokens)
    )
    try:
        yield platform, tokens
    finally:
        codes = await asyncio.to_thread(stop_platform, platform)
        assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes
        for service in ("gateway", "scheduler", "registry"):
            logs = platform.logs(service)
            for token in (PLATFORM_TOKEN, OPS_TOKEN, "e2e-platform-token-2", "e2e-ops-token-2"):
                assert token not in logs, f"an API token is in the {service} log"


async def grpc_code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_api_needs_a_token_and_rotation_needs_no_restart(secured: tuple[Platform, Path]) -> None:
    platform, tokens = secured
    env = platform.env
    spec = python_spec("authed", "echo")
    async with aiohttp.ClientSession(base_url=platform.base_url) as http:
        async with http.post("/v1/functions", json=spec) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await response.json())["error"]["code"] == "UNAUTHENTICATED"
        for open_path in ("/healthz", "/readyz"):
            async with http.get(open_path) as response:
                assert response.status == 200, open_path
        async with http.post("/v1/functions", json=spec, headers=bearer(OPS_TOKEN)) as response:
            assert response.status == 201, await response.text()
        # The gateway's own calls (the invocation stream, the registry) carry its token.
        async with http.post(
            "/v1/functions/authed:invoke", json={"input": 7}, headers=bearer(OPS_TOKEN)
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["output"]["input"] == 7

    async with (
        grpc.aio.insecure_channel(env["NANOFAAS_REGISTRY_ADDRESS"]) as registry_channel,
        grpc.aio.insecure_channel(env["NANOFAAS_SCHEDULER_ADDRESS"]) as scheduler_channel,
    ):
        registry = registry_pb2_grpc.RegistryStub(registry_channel)
        scheduler = scheduler_pb2_grpc.SchedulerStub(scheduler_channel)
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        other = registry_pb2.RegisterRequest(spec=types_pb2.FunctionSpec(name="grpc-made", image="x"))
        assert await grpc_code(registry.Register(other, timeout=WAIT_S)) == unauthenticated
        assert (
            await grpc_code(registry.Delete(registry_pb2.DeleteFunctionRequest(name="authed")))
            == unauthenticated
        )
        completion = scheduler_pb2.CompleteExecutionRequest(
            execution_id="any", status=types_pb2.EXECUTION_STATE_SUCCESS, attempt=0
        )
        assert await grpc_code(scheduler.CompleteExecution(completion, timeout=WAIT_S)) == unauthenticated
        metadata = (("authorization", f"Bearer {OPS_TOKEN}"),)
        assert (
            await grpc_code(registry.Register(other, metadata=metadata, timeout=WAIT_S)) == grpc.StatusCode.OK
        )

        write_tokens(tokens, "e2e-platform-token-2", "e2e-ops-token-2")  # rotation, nothing restarts
        assert await grpc_code(
            registry.Get(registry_pb2.GetFunctionRequest(name="authed"), metadata=metadata)
        ) == (unauthenticated)
        new = (("authorization", "Bearer e2e-ops-token-2"),)
        assert await grpc_code(
            registry.Get(registry_pb2.GetFunctionRequest(name="authed"), metadata=new)
        ) == (grpc.StatusCode.OK)

    async with AsyncClient(platform.base_url, token=OPS_TOKEN) as old_client:
        with pytest.raises(Unauthenticated):
            await old_client.get_function("authed")
    async with AsyncClient(platform.base_url, token="e2e-ops-token-2") as client:
        assert (await client.get_function("authed"))["name"] == "authed"
    addresses = (env["NANOFAAS_REGISTRY_ADDRESS"], env["NANOFAAS_SCHEDULER_ADDRESS"])
    async with GrpcClient(*addresses, token="") as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.get_function("authed")
    async with GrpcClient(*addresses, token="e2e-ops-token-2") as grpc_client:
        assert (await grpc_client.get_function("authed")).name == "authed"
    async with aiohttp.ClientSession(base_url=platform.base_url, headers=bearer("e2e-ops-token-2")) as http:
        # A new platform token on every hop: gateway -> scheduler -> registry still works.
        async with http.put("/v1/functions/authed", json=python_spec("authed", "echo", timeoutMs=5000)) as r:
            assert r.status == 200, await r.text()
        async with http.post("/v1/functions/authed:invoke", json={"input": 8}) as response:
            assert response.status == 200, await response.text()


async def test_an_operator_may_end_a_queued_execution_without_a_completion_token(
    secured: tuple[Platform, Path],
) -> None:
    platform, _ = secured
    async with aiohttp.ClientSession(base_url=platform.base_url, headers=bearer(OPS_TOKEN)) as http:
        spec = python_spec("ops", "sleep", executionMode="WARM", concurrency=1)
        async with http.post("/v1/functions", json=spec) as response:
            assert response.status == 201
        ids = []
        for value in (1, 0):  # the second waits behind the first
            async with http.post("/v1/functions/ops:enqueue", json={"input": value}) as response:
                assert response.status == 202
                ids.append((await response.json())["executionId"])
        body = {"status": "success", "output": {"by": "operator"}}
        url = f"/v1/internal/executions/{ids[1]}:complete"
        async with (
            aiohttp.ClientSession(base_url=platform.base_url) as anonymous,
            anonymous.post(url, json=body) as response,
        ):
            assert response.status == 401
        async with http.post(f"/v1/internal/executions/{ids[1]}:complete", json=body) as response:
            assert response.status == 204
        assert (await wait_terminal(http, ids[1]))["output"] == {"by": "operator"}
        assert (await wait_terminal(http, ids[0]))["output"] == "slept"
