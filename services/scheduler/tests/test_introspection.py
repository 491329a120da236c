"""What the CLI reads: recent executions, a function's status and its logs (book, backend, gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.execution import Execution, Request, State
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.store import ExecutionStore, UnknownCursor
from nanofaas_scheduler.dispatch.base import Attempt, ReplicaCounts
from nanofaas_scheduler.dispatch.local import LocalBackend
from nanofaas_scheduler.dispatch.logs import (
    MAX_MESSAGE_CHARS,
    LogBook,
    LogLine,
    LogQuery,
    TooManyFollowers,
    parse_line,
)
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_attempt, make_spec
from .test_server import FakeRegistry


def line(ts: int, message: str = "m", execution: str = "") -> LogLine:
    return LogLine(ts, "stdout", execution, "INFO", message)


# -- the log book ---------------------------------------------------------------


def test_book_keeps_the_last_lines_per_function_and_filters() -> None:
    book = LogBook(lines_per_function=3)
    for ts in range(5):
        book.append("a", line(ts, f"a{ts}", execution="x" if ts % 2 else "y"))
    book.append("b", line(9, "b"))
    assert [entry.message for entry in book.read(LogQuery("a"))] == ["a2", "a3", "a4"]
    assert [entry.message for entry in book.read(LogQuery("a", execution_id="x"))] == ["a3"]
    assert [entry.message for entry in book.read(LogQuery("a", since_ms=4))] == ["a4"]
    assert [entry.message for entry in book.read(LogQuery("a", tail=1))] == ["a4"]
    book.forget("a")
    assert book.read(LogQuery("a")) == []
    assert [entry.message for entry in book.read(LogQuery("b"))] == ["b"]


def test_book_truncates_long_messages() -> None:
    book = LogBook()
    book.append("a", line(1, "x" * (MAX_MESSAGE_CHARS + 10)))
    assert len(book.read(LogQuery("a"))[0].message) == MAX_MESSAGE_CHARS


async def test_follow_gets_the_backlog_then_new_lines_and_is_bounded() -> None:
    book = LogBook(max_followers=1)
    book.append("a", line(1, "old"))
    stream = book.stream(LogQuery("a", follow=True))
    assert (await anext(stream)).message == "old"
    with pytest.raises(TooManyFollowers):
        book.stream(LogQuery("a", follow=True))
    book.append("a", line(2, "new"))
    book.append("other", line(3, "elsewhere"))
    assert (await asyncio.wait_for(anext(stream), 5)).message == "new"
    await stream.aclose()  # type: ignore[attr-defined]
    book.stream(LogQuery("a", follow=True))  # the follower left: room again


def test_runtime_json_lines_keep_their_fields_and_raw_text_is_stderr() -> None:
    runtime = orjson.dumps(
        {"ts": "t", "level": "WARNING", "msg": "hi", "executionId": "e1", "stream": "stdout"}
    )
    assert parse_line(runtime, 7) == LogLine(7, "stdout", "e1", "WARNING", "hi")
    assert parse_line(b"Traceback {oops}", 8) == LogLine(8, "stderr", "", "INFO", "Traceback {oops}")


# -- recent executions -------------------------------------------------------------


def test_store_lists_newest_first_with_filters_and_a_cursor() -> None:
    store = ExecutionStore(60, 100, lambda: 0.0)
    for n in range(6):
        execution = Execution(f"e{n}", "f" if n % 2 else "g", Request(b"", "", {}), trace_id="t")
        if n == 4:
            execution.state = State.SUCCESS
        store.add(execution)
    assert [e.id for e in store.recent(limit=3)] == ["e5", "e4", "e3"]
    assert [e.id for e in store.recent(function="f")] == ["e5", "e3", "e1"]
    assert [e.id for e in store.recent(state=State.SUCCESS)] == ["e4"]
    assert [e.id for e in store.recent(before="e3", limit=2)] == ["e2", "e1"]
    with pytest.raises(UnknownCursor):
        store.recent(before="nope")


# -- the local backend feeds the book and reports its pools ------------------------------

HANDLER = """
def handle(request, context=None):
    print("handling", request["input"])
    return request["input"]
"""


async def test_local_backend_keeps_handler_prints_with_their_execution(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    backend = LocalBackend()
    spec = make_spec("warm", env={"PYTHONPATH": str(tmp_path)}, execution_mode=types_pb2.EXECUTION_MODE_WARM)
    try:
        # min and max are the spec's (minReplicas 1, maxReplicas = concurrency 4 by default).
        assert backend.replicas(spec) == ReplicaCounts(min=1, max=4)
        attempt = make_attempt(spec, b'"one"', execution_id="exec-1")
        outcome = await backend.dispatch(attempt)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome.message
        assert backend.replicas(spec) == ReplicaCounts(1, 1, 1, 1, 4)
        stream = backend.logs(LogQuery("warm", execution_id="exec-1", follow=True))
        # The runtime writes the line before it answers, but it reaches us on another pipe: follow it.
        found = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()  # type: ignore[attr-defined]
        assert (found.message, found.stream, found.execution_id) == ("handling one", "stdout", "exec-1")
        await backend.function_removed("warm")
        assert backend.log_book.read(LogQuery("warm")) == []
        assert backend.replicas(spec) == ReplicaCounts(min=1, max=4)
    finally:
        await backend.close()


# -- the RPCs ---------------------------------------------------------------------


class BookDispatcher(StubDispatcher):
    """A stub backend with a log book and two replicas, to drive the RPCs."""

    def __init__(self, release: asyncio.Event) -> None:
        self.book = LogBook()
        self.release = release
        super().__init__(self._gated)

    async def _gated(self, attempt: Attempt) -> Outcome:
        await self.release.wait()
        return Outcome(kind=OutcomeKind.SUCCESS, output=attempt.request.data)

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        return ReplicaCounts(current=2, ready=1, desired=2, min=2, max=2)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        return self.book.stream(query)


@pytest.fixture
async def served() -> AsyncIterator[tuple[scheduler_pb2_grpc.SchedulerAsyncStub, BookDispatcher]]:
    registry = grpc.aio.server()
    fake = FakeRegistry(make_spec("fn", concurrency=1))  # type: ignore[abstract]
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    dispatcher = BookDispatcher(asyncio.Event())
    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, dispatcher, metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield scheduler_pb2_grpc.SchedulerStub(channel), dispatcher
    finally:
        dispatcher.release.set()
        await server.stop()
        await registry.stop(None)


def invoke_request(value: bytes) -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(
        function_name="fn", input=types_pb2.Payload(data=value, content_type="application/json")
    )


async def test_status_and_listing_see_queue_and_in_flight(
    served: tuple[scheduler_pb2_grpc.SchedulerAsyncStub, BookDispatcher],
) -> None:
    stub, dispatcher = served
    first = await stub.Enqueue(invoke_request(b"1"))
    second = await stub.Enqueue(invoke_request(b"2"))
    status = await stub.GetFunctionStatus(scheduler_pb2.GetFunctionStatusRequest(function_name="fn"))
    assert (status.name, status.in_flight, status.queued) == ("fn", 1, 1)
    assert status.replicas == scheduler_pb2.Replicas(current=2, ready=1, desired=2, min=2, max=2)
    listing = await stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(function_name="fn"))
    assert [e.execution_id for e in listing.executions] == [second.execution_id, first.execution_id]
    running = await stub.ListExecutions(
        scheduler_pb2.ListExecutionsRequest(status=types_pb2.EXECUTION_STATE_RUNNING)
    )
    assert [e.execution_id for e in running.executions] == [first.execution_id]
    paged = await stub.ListExecutions(
        scheduler_pb2.ListExecutionsRequest(before=second.execution_id, limit=1)
    )
    assert [e.execution_id for e in paged.executions] == [first.execution_id]
    dispatcher.release.set()
    ended = await stub.Invoke(invoke_request(b"3"))
    listing = await stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(limit=1))
    (newest,) = listing.executions
    assert newest.execution_id == ended.execution_id
    assert not newest.HasField("output")  # listings never carry outputs
    idle = await stub.GetFunctionStatus(scheduler_pb2.GetFunctionStatusRequest(function_name="fn"))
    assert (idle.queued, idle.oldest_queued_age_ms) == (0, 0)


async def test_bad_requests_get_status_codes(
    served: tuple[scheduler_pb2_grpc.SchedulerAsyncStub, BookDispatcher],
) -> None:
    stub, _ = served
    calls = [
        stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(limit=1001)),
        stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(limit=0)),
        stub.ListExecutions(scheduler_pb2.ListExecutionsRequest(before="gone")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetFunctionStatus(scheduler_pb2.GetFunctionStatusRequest(function_name="nope"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    for request in (
        scheduler_pb2.GetLogsRequest(function_name="nope"),
        scheduler_pb2.GetLogsRequest(function_name="fn", tail=10_001),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [entry async for entry in stub.GetLogs(request)]
        assert caught.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


async def test_logs_are_read_and_followed(
    served: tuple[scheduler_pb2_grpc.SchedulerAsyncStub, BookDispatcher],
) -> None:
    stub, dispatcher = served
    for ts in (1, 2, 3):
        dispatcher.book.append("fn", line(ts, f"l{ts}", execution="e"))
    lines = [e async for e in stub.GetLogs(scheduler_pb2.GetLogsRequest(function_name="fn", tail=2))]
    assert [(e.ts_ms, e.message, e.execution_id, e.stream) for e in lines] == [
        (2, "l2", "e", "stdout"),
        (3, "l3", "e", "stdout"),
    ]
    call = stub.GetLogs(scheduler_pb2.GetLogsRequest(function_name="fn", since_ms=3, follow=True))
    assert ("x-logs", "ready") in tuple(await call.initial_metadata())
    reader = aiter(call)
    assert (await asyncio.wait_for(anext(reader), 5)).message == "l3"
    dispatcher.book.append("fn", line(4, "live"))
    assert (await asyncio.wait_for(anext(reader), 5)).message == "live"
    call.cancel()
