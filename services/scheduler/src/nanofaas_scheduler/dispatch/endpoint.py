"""ENDPOINT mode: a user-run HTTP endpoint, the same on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, function_error
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher
from nanofaas_scheduler.dispatch.outbound_policy import OutboundPolicy, UrlNotAllowed

if TYPE_CHECKING:
    import aiohttp


class EndpointDispatcher(Dispatcher):
    """Calls endpointUrl, unless the outbound policy denies its address (checked per call,
    after resolving the name, so a name cannot be pointed at a denied address later)."""

    def __init__(self, outbound: OutboundPolicy | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._outbound = outbound or OutboundPolicy()

    async def dispatch(self, attempt: Attempt) -> Outcome:
        url = attempt.spec.endpoint_url
        try:
            await self._outbound.check(url)
        except UrlNotAllowed as exc:
            return function_error(f"endpointUrl: {exc}", codes.URL_NOT_ALLOWED)
        # Imported at the first ENDPOINT call, not at start: aiohttp is RSS a scheduler
        # without ENDPOINT functions never needs (endpoint_client.py).
        from nanofaas_scheduler.dispatch import endpoint_client

        if self._session is None:
            self._session = endpoint_client.new_session()
        return await endpoint_client.post_invocation(self._session, url, attempt)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
