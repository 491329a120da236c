"""The outbound policy for callback URLs (issue 17, finding 10): deny list, exceptions, names."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from nanofaas_gateway.callbacks import RetryPolicy, post_callback
from nanofaas_gateway.config import ConfigError, Settings
from nanofaas_gateway.outbound_policy import OutboundPolicy, UrlNotAllowed

METADATA = OutboundPolicy(deny=["169.254.0.0/16", "fe80::/10"], allow=["169.254.7.0/24"])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("169.254.169.254", False),
        ("169.254.7.1", True),  # an exception to the deny list
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),  # IPv4-mapped is the IPv4 address
        ("127.0.0.1", True),
        ("10.0.0.1", True),
    ],
)
def test_deny_list_with_exceptions(address: str, allowed: bool) -> None:
    assert METADATA.allows(ipaddress.ip_address(address)) is allowed


def test_literal_urls_are_refused_at_once() -> None:
    with pytest.raises(UrlNotAllowed, match=r"169\.254\.169\.254"):
        METADATA.check_literal("http://169.254.169.254/latest/meta-data")
    with pytest.raises(UrlNotAllowed):
        METADATA.check_literal("http://[fe80::1]:8080/x")
    METADATA.check_literal("http://metadata.internal/x")  # a name: judged when resolved
    OutboundPolicy().check_literal("http://169.254.169.254/")  # no policy: everything goes


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[bytes]]]:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/done", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], received  # type: ignore[union-attr]
    await runner.cleanup()


async def test_a_name_resolving_to_a_denied_address_is_never_called(
    receiver: tuple[int, list[bytes]],
) -> None:
    port, received = receiver
    loopback_denied = OutboundPolicy(deny=["127.0.0.0/8", "::1/128"])
    async with aiohttp.ClientSession() as session:
        url = f"http://localhost:{port}/done"
        problem = await post_callback(session, url, b"{}", RetryPolicy(attempts=1), loopback_denied)
        assert problem is not None and "localhost resolves to" in problem
        assert received == []
        assert await post_callback(session, url, b"{}", RetryPolicy(attempts=1), OutboundPolicy()) is None
        assert received == [b"{}"]


def test_cidrs_are_checked_at_start() -> None:
    settings = Settings.from_env({"NANOFAAS_OUTBOUND_DENY_CIDRS": "169.254.0.0/16, fe80::/10"})
    assert settings.outbound_deny == ("169.254.0.0/16", "fe80::/10")
    with pytest.raises(ConfigError, match="NANOFAAS_OUTBOUND_DENY_CIDRS"):
        Settings.from_env({"NANOFAAS_OUTBOUND_DENY_CIDRS": "metadata"})
