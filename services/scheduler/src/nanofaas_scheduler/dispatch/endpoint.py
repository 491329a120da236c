"""ENDPOINT mode: a user-run HTTP endpoint, the same on every backend."""

from __future__ import annotations

import aiohttp

from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher
from nanofaas_scheduler.dispatch.http_invoke import new_session, post_invocation


class EndpointDispatcher(Dispatcher):
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def dispatch(self, attempt: Attempt) -> Outcome:
        if self._session is None:
            self._session = new_session()
        return await post_invocation(self._session, attempt.spec.endpoint_url, attempt)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
