"""One invocation = one trace, from the REST call through gRPC to the user's handler.

The chain is three spans: the gateway's server span, the scheduler's `dispatch` (a child
of the gateway's span, carrying the queue wait as `nanofaas.queue_wait_ms`) and the
runtime's `invoke`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .conftest import Platform, start_platform, stop_platform
from .helpers import get_execution, invoke, python_spec, register
from .otlp_receiver import ReceivedSpan, Receiver, start_receiver


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Platform, Receiver]]:
    server, receiver, port = await start_receiver()
    platform = await asyncio.to_thread(
        start_platform,
        tmp_path / "logs",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    try:
        yield platform, receiver
    finally:
        await asyncio.to_thread(stop_platform, platform)
        await server.stop(None)


def chain_complete(spans: list[ReceivedSpan], trace_id: str) -> bool:
    """Every hop's spans have arrived (each service exports on its own schedule)."""
    mine = [span for span in spans if span.trace_id == trace_id]
    names = {span.name for span in mine}
    gateway = any(span.service == "nanofaas-gateway" and span.name.startswith("POST") for span in mine)
    return gateway and {"dispatch", "invoke"} <= names


def by_name(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans if span.trace_id == trace_id}


async def test_one_invocation_is_one_trace(traced: tuple[Platform, Receiver]) -> None:
    platform, receiver = traced
    async with aiohttp.ClientSession(base_url=platform.base_url) as http:
        await register(http, python_spec("traced", "echo", executionMode="WARM"))
        status, headers, _ = await invoke(http, "traced", 1, headers={"X-Trace-Id": "caller-42"})
        assert status == 200
        trace_id = (await get_execution(http, headers["X-Execution-Id"]))["traceId"]
    assert len(trace_id) == 32
    await receiver.wait_for(lambda spans: chain_complete(spans, trace_id))
    spans = by_name(receiver.spans, trace_id)
    services = {span.service for span in receiver.spans if span.trace_id == trace_id}
    assert {"nanofaas-gateway", "nanofaas-scheduler", "nanofaas-runtime"} <= services
    gateway = next(
        s
        for s in receiver.spans
        if s.trace_id == trace_id and s.service == "nanofaas-gateway" and not s.parent_span_id
    )
    assert set(spans) == {gateway.name, "dispatch", "invoke"}
    assert spans["dispatch"].parent_span_id == gateway.span_id
    assert spans["invoke"].parent_span_id == spans["dispatch"].span_id
    assert spans["dispatch"].service == "nanofaas-scheduler"
    assert spans["invoke"].service == "nanofaas-runtime"
    assert spans["dispatch"].attributes["faas.name"] == "traced"
    assert spans["dispatch"].attributes["nanofaas.execution_id"] == headers["X-Execution-Id"]
    assert spans["dispatch"].attributes["nanofaas.attempt"] == 1
    assert isinstance(spans["dispatch"].attributes["faas.coldstart"], bool)
    wait_ms = spans["dispatch"].attributes["nanofaas.queue_wait_ms"]
    assert isinstance(wait_ms, float) and 0 <= wait_ms < 60_000
    assert any(s.attributes.get("nanofaas.x_trace_id") == "caller-42" for s in receiver.spans)


async def test_incoming_traceparent_is_continued(traced: tuple[Platform, Receiver]) -> None:
    platform, receiver = traced
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with aiohttp.ClientSession(base_url=platform.base_url) as http:
        await register(http, python_spec("continued", "echo", executionMode="WARM"))
        status, headers, _ = await invoke(
            http, "continued", 1, headers={"traceparent": f"00-{trace_id}-{parent}-01"}
        )
        assert status == 200
        assert (await get_execution(http, headers["X-Execution-Id"]))["traceId"] == trace_id
    await receiver.wait_for(lambda spans: chain_complete(spans, trace_id))
    roots = [s for s in receiver.spans if s.trace_id == trace_id and s.parent_span_id == parent]
    assert [s.service for s in roots] == ["nanofaas-gateway"]


async def test_a_not_sampled_call_exports_nothing_and_keeps_its_trace_id(
    traced: tuple[Platform, Receiver],
) -> None:
    """A caller that decided "not sampled" (flags 00) is followed by every hop (parent-based
    sampling, the SDK default): no process exports a span, the trace id still travels."""
    platform, receiver = traced
    unsampled, sampled, parent = (
        "1af7651916cd43dd8448eb211c80319c",
        "2af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    async with aiohttp.ClientSession(base_url=platform.base_url) as http:
        await register(http, python_spec("unsampled", "echo", executionMode="WARM"))
        for trace_id, flags in ((unsampled, "00"), (sampled, "01")):
            status, headers, _ = await invoke(
                http, "unsampled", 1, headers={"traceparent": f"00-{trace_id}-{parent}-{flags}"}
            )
            assert status == 200
            assert (await get_execution(http, headers["X-Execution-Id"]))["traceId"] == trace_id
    # Each process exports in order, so once the sampled call's chain has arrived from all
    # three, any span of the earlier, not sampled call would have arrived before it.
    await receiver.wait_for(lambda spans: chain_complete(spans, sampled))
    assert not [span.name for span in receiver.spans if span.trace_id == unsampled]
