"""Optional API authentication of the REST API and the gateway's credentials on its gRPC calls (issue 17)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_gateway import GatewayClients
from nanofaas_gateway.config import ConfigError, Settings

from .gateway_harness import Gateway, serve_gateway, settings_for
from .test_gateway_executions import execution

pytestmark = pytest.mark.asyncio(loop_scope="module")


def write_tokens(path: Path, *tokens: str) -> None:
    """Replace the file at once, as a Secret volume update does (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text("# API tokens, the platform's own first\n" + "".join(f"{token}\n" for token in tokens))
    os.replace(staged, path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def authenticated_gateway(gateway: Gateway, tokens: Path, **changes: object) -> AsyncIterator[str]:
    """Another gateway in front of the same fakes, with API authentication on."""
    settings = settings_for(gateway, api_tokens_file=str(tokens), **changes)
    clients = GatewayClients.connect(settings)
    try:
        async with serve_gateway(settings, clients) as (base_url, _):
            yield base_url
    finally:
        await clients.close()


async def status_of(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None, **kw: object
) -> tuple[int, bytes, str]:
    async with session.request(method, url, headers=headers, **kw) as response:  # type: ignore[arg-type]
        return response.status, await response.read(), response.headers.get("WWW-Authenticate", "")


async def test_rest_needs_a_bearer_token_except_on_open_paths(gateway: Gateway, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token", "ops-token")
    gateway.registry.specs["fn"] = types_pb2.FunctionSpec(name="fn", image="img")
    async with authenticated_gateway(gateway, tokens) as base:
        session = gateway.session
        for headers in (None, bearer("guess"), {"Authorization": "Basic b3BzOnRva2Vu"}):
            status, body, challenge = await status_of(session, "GET", f"{base}/v1/functions/fn", headers)
            assert status == 401
            assert orjson.loads(body)["error"]["code"] == "UNAUTHENTICATED"
            assert challenge == "Bearer"
            assert b"guess" not in body
        status, _, _ = await status_of(
            session, "POST", f"{base}/v1/functions/fn:invoke", None, json={"input": 1}
        )
        assert status == 401
        assert (await status_of(session, "GET", f"{base}/healthz"))[0] == 200
        status, body, _ = await status_of(session, "GET", f"{base}/v1/functions/fn", bearer("ops-token"))
        assert status == 200, body
        # The gateway's own calls carried the platform's token (the file's first): a unary
        # one to the registry and the multiplexed invocation stream to the scheduler.
        assert gateway.registry.get_metadata[-1]["authorization"] == "Bearer platform-token"
        status, body, _ = await status_of(
            session, "POST", f"{base}/v1/functions/fn:invoke", bearer("ops-token"), json={"input": 1}
        )
        assert status == 200, body
        assert gateway.scheduler.stream_metadata[-1]["authorization"] == "Bearer platform-token"


async def test_rotation_without_restart(gateway: Gateway, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token", "old-token")
    gateway.registry.specs["fn"] = types_pb2.FunctionSpec(name="fn", image="img")
    async with authenticated_gateway(gateway, tokens) as base:
        url = f"{base}/v1/functions/fn"
        assert (await status_of(gateway.session, "GET", url, bearer("old-token")))[0] == 200
        write_tokens(tokens, "platform-token-2", "new-token")
        assert (await status_of(gateway.session, "GET", url, bearer("old-token")))[0] == 401
        assert (await status_of(gateway.session, "GET", url, bearer("new-token")))[0] == 200
        assert gateway.registry.get_metadata[-1]["authorization"] == "Bearer platform-token-2"


async def test_open_paths_are_configurable(gateway: Gateway, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token")
    async with authenticated_gateway(gateway, tokens, open_paths=()) as base:
        assert (await status_of(gateway.session, "GET", f"{base}/healthz"))[0] == 401
        assert (await status_of(gateway.session, "GET", f"{base}/healthz", bearer("platform-token")))[
            0
        ] == 200


async def test_completions_authenticate_with_their_own_token(gateway: Gateway, tmp_path: Path) -> None:
    """A runtime has no API token: its attempt's completion token lets it through to the scheduler,
    which judges it. Without one, only an API-authenticated operator may complete."""
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token", "ops-token")
    gateway.scheduler.executions["ex-1"] = execution(status=types_pb2.EXECUTION_STATE_RUNNING)
    async with authenticated_gateway(gateway, tokens) as base:
        url = f"{base}/v1/internal/executions/ex-1:complete"
        body = {"status": "success", "output": 1}
        assert (await status_of(gateway.session, "POST", url, None, json=body))[0] == 401
        runtime = {"X-Completion-Token": "attempt-token"}
        assert (await status_of(gateway.session, "POST", url, runtime, json=body))[0] == 204
        assert gateway.scheduler.completions[-1].completion_token == "attempt-token"
        assert (await status_of(gateway.session, "POST", url, bearer("ops-token"), json=body))[0] == 204
        assert gateway.scheduler.completions[-1].completion_token == ""  # the operator's override
    assert len(gateway.scheduler.completions) == 2


@pytest.mark.parametrize("content", [None, "", "\n# no token\n"])
async def test_an_unusable_tokens_file_stops_the_gateway_at_start(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "tokens"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="NANOFAAS_API_TOKENS_FILE"):
        Settings.from_env({"NANOFAAS_API_TOKENS_FILE": str(path)})
