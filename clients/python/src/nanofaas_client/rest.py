"""The REST clients: `Client` (blocking) and `AsyncClient` (asyncio), the same methods on both.

Each method builds a `Call` (api.py) and sends it; only sending, sleeping and
streaming differ between the two, so they are the only code written twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from nanofaas_client import api
from nanofaas_client.api import Call, InvocationOptions
from nanofaas_client.models import (
    Enqueued,
    Execution,
    FunctionSpec,
    FunctionStatus,
    FunctionSummary,
    Invocation,
    LogLine,
)
from nanofaas_client.policies import NO_RETRY, Backoff, RetryPolicy

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
# Reads wait for the longest invocation the platform allows (300 s) plus a margin.
DEFAULT_TIMEOUT = httpx.Timeout(330.0, connect=5.0)
_STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)


def default_url() -> str:
    return os.environ.get("NANOFAAS_URL", "").strip() or DEFAULT_URL


def _auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer` for a platform with API authentication on (token or $NANOFAAS_TOKEN)."""
    token = (os.environ.get("NANOFAAS_TOKEN", "") if token is None else token).strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _retry_policy(retry: bool | RetryPolicy) -> RetryPolicy:
    if isinstance(retry, RetryPolicy):
        return retry
    return RetryPolicy() if retry else NO_RETRY


def _options(
    *,
    idempotency_key: str,
    traceparent: str,
    trace_id: str,
    timeout_ms: int | None,
    callback_url: str,
    headers: Mapping[str, str] | None,
) -> InvocationOptions:
    return InvocationOptions(
        idempotency_key=idempotency_key,
        traceparent=traceparent,
        trace_id=trace_id,
        timeout_ms=timeout_ms,
        callback_url=callback_url,
        headers=headers or {},
    )


class _Base:
    def __init__(
        self, url: str | None, retry_rate_limited: bool | RetryPolicy, backoff: Backoff | None
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.retry = _retry_policy(retry_rate_limited)
        self.backoff = backoff or Backoff()


class Client(_Base):
    """A blocking client. `retry_rate_limited=True` (or a RetryPolicy) honours Retry-After on 429."""

    def __init__(
        self,
        url: str | None = None,
        *,
        retry_rate_limited: bool | RetryPolicy = False,
        backoff: Backoff | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(url, retry_rate_limited, backoff)
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, headers=_auth_headers(token)
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    headers=call.headers,
                    json=call.json,
                    content=call.content,
                )
            except httpx.TransportError as exc:
                raise api.unreachable(self.url, exc) from exc
            delay = self.retry.delay(response, attempt)
            if delay is None:
                return call.parse(response)
            time.sleep(delay)

    # -- functions
    def list_functions(self) -> list[FunctionSummary]:
        return self.send(api.list_functions())

    def get_function(self, name: str) -> FunctionSpec:
        return self.send(api.get_function(name))

    def register(self, spec: Mapping[str, Any]) -> FunctionSummary:
        return self.send(api.register(spec))

    def update(self, spec: Mapping[str, Any]) -> FunctionSpec:
        return self.send(api.update(spec))

    def delete(self, name: str) -> None:
        self.send(api.delete(name))

    # -- invocations
    def invoke(
        self,
        name: str,
        input: Any = None,
        *,
        data: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        traceparent: str = "",
        trace_id: str = "",
        timeout_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Invocation:
        """Run and wait; raises the error family of a failed execution (ExecutionFailed, ...)."""
        options = _options(
            idempotency_key=idempotency_key,
            traceparent=traceparent,
            trace_id=trace_id,
            timeout_ms=timeout_ms,
            callback_url="",
            headers=headers,
        )
        return self.send(api.invoke(name, input, data=data, metadata=metadata, options=options))

    def enqueue(
        self,
        name: str,
        input: Any = None,
        *,
        data: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        traceparent: str = "",
        trace_id: str = "",
        callback_url: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Enqueued:
        options = _options(
            idempotency_key=idempotency_key,
            traceparent=traceparent,
            trace_id=trace_id,
            timeout_ms=None,
            callback_url=callback_url,
            headers=headers,
        )
        return self.send(api.enqueue(name, input, data=data, metadata=metadata, options=options))

    # -- executions
    def get_execution(self, execution_id: str) -> Execution:
        return self.send(api.get_execution(execution_id))

    def list_executions(
        self,
        function: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[Execution]:
        return self.send(api.list_executions(function, status, limit, before))

    def wait(self, execution_id: str, timeout_s: float = 60.0) -> Execution:
        """Poll with back-off until the execution has ended (whatever its outcome); WaitTimedOut after."""
        deadline = time.monotonic() + timeout_s
        for delay in self.backoff.delays():
            execution = self.get_execution(execution_id)
            if execution.ended:
                return execution
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise api.wait_timed_out(execution_id, timeout_s)
            time.sleep(min(delay, remaining))
        raise AssertionError("unreachable")  # pragma: no cover - delays() never ends

    # -- what the CLI reads
    def function_status(self, name: str) -> FunctionStatus:
        return self.send(api.function_status(name))

    def logs(
        self, name: str, execution: str | None = None, since: str | None = None, tail: int | None = None
    ) -> list[LogLine]:
        return self.send(api.logs(name, execution, since, tail))

    def follow_logs(
        self, name: str, execution: str | None = None, since: str | None = None, tail: int | None = None
    ) -> Iterator[LogLine]:
        """The kept lines, then new ones as they come, until the caller stops (or the hour is up)."""
        params = api.log_params(execution, since, tail, follow=True)
        try:
            with self._http.stream(
                "GET", api.follow_path(name), params=params, timeout=_STREAM_TIMEOUT
            ) as response:
                if not response.is_success:
                    response.read()
                    raise api.error_from(response)
                for raw in response.iter_lines():
                    if (line := api.event_line(raw)) is not None:
                        yield line
        except httpx.TransportError as exc:
            raise api.unreachable(self.url, exc) from exc

    def ready(self) -> bool:
        return self.send(api.ready())


class AsyncClient(_Base):
    """The asyncio twin of Client: the same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        retry_rate_limited: bool | RetryPolicy = False,
        backoff: Backoff | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(url, retry_rate_limited, backoff)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, transport=transport, headers=_auth_headers(token)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    headers=call.headers,
                    json=call.json,
                    content=call.content,
                )
            except httpx.TransportError as exc:
                raise api.unreachable(self.url, exc) from exc
            delay = self.retry.delay(response, attempt)
            if delay is None:
                return call.parse(response)
            await asyncio.sleep(delay)

    async def list_functions(self) -> list[FunctionSummary]:
        return await self.send(api.list_functions())

    async def get_function(self, name: str) -> FunctionSpec:
        return await self.send(api.get_function(name))

    async def register(self, spec: Mapping[str, Any]) -> FunctionSummary:
        return await self.send(api.register(spec))

    async def update(self, spec: Mapping[str, Any]) -> FunctionSpec:
        return await self.send(api.update(spec))

    async def delete(self, name: str) -> None:
        await self.send(api.delete(name))

    async def invoke(
        self,
        name: str,
        input: Any = None,
        *,
        data: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        traceparent: str = "",
        trace_id: str = "",
        timeout_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Invocation:
        options = _options(
            idempotency_key=idempotency_key,
            traceparent=traceparent,
            trace_id=trace_id,
            timeout_ms=timeout_ms,
            callback_url="",
            headers=headers,
        )
        return await self.send(api.invoke(name, input, data=data, metadata=metadata, options=options))

    async def enqueue(
        self,
        name: str,
        input: Any = None,
        *,
        data: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        traceparent: str = "",
        trace_id: str = "",
        callback_url: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Enqueued:
        options = _options(
            idempotency_key=idempotency_key,
            traceparent=traceparent,
            trace_id=trace_id,
            timeout_ms=None,
            callback_url=callback_url,
            headers=headers,
        )
        return await self.send(api.enqueue(name, input, data=data, metadata=metadata, options=options))

    async def get_execution(self, execution_id: str) -> Execution:
        return await self.send(api.get_execution(execution_id))

    async def list_executions(
        self,
        function: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[Execution]:
        return await self.send(api.list_executions(function, status, limit, before))

    async def wait(self, execution_id: str, timeout_s: float = 60.0) -> Execution:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for delay in self.backoff.delays():
            execution = await self.get_execution(execution_id)
            if execution.ended:
                return execution
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise api.wait_timed_out(execution_id, timeout_s)
            await asyncio.sleep(min(delay, remaining))
        raise AssertionError("unreachable")  # pragma: no cover

    async def function_status(self, name: str) -> FunctionStatus:
        return await self.send(api.function_status(name))

    async def logs(
        self, name: str, execution: str | None = None, since: str | None = None, tail: int | None = None
    ) -> list[LogLine]:
        return await self.send(api.logs(name, execution, since, tail))

    async def follow_logs(
        self, name: str, execution: str | None = None, since: str | None = None, tail: int | None = None
    ) -> AsyncIterator[LogLine]:
        params = api.log_params(execution, since, tail, follow=True)
        try:
            async with self._http.stream(
                "GET", api.follow_path(name), params=params, timeout=_STREAM_TIMEOUT
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise api.error_from(response)
                async for raw in response.aiter_lines():
                    if (line := api.event_line(raw)) is not None:
                        yield line
        except httpx.TransportError as exc:
            raise api.unreachable(self.url, exc) from exc

    async def ready(self) -> bool:
        return await self.send(api.ready())
