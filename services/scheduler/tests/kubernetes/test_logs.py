"""Function logs on the Kubernetes backend: pod logs through the API, against the fake cluster's kubelet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes import logs as pod_logs
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery, TooManyFollowers

from ..conftest import make_attempt
from .conftest import no_jobs_left, ours, runtime_spec, wait_off_loop

HANDLER = """
def handle(request, context=None):
    print(f"said {request['input']}")
    return request["input"]
"""


@pytest.fixture
def chatty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "chatty"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    return folder


def warm(folder: Path, **fields: Any) -> types_pb2.FunctionSpec:
    return runtime_spec(folder, **{"execution_mode": types_pb2.EXECUTION_MODE_WARM, **fields})


async def said(backend: KubernetesBackend, spec: types_pb2.FunctionSpec, value: str) -> str:
    """Invoke; the execution id."""
    attempt = make_attempt(spec, orjson.dumps(value), timeout=60)
    outcome = await backend.dispatch(attempt)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    return attempt.execution_id


async def read(backend: KubernetesBackend, query: LogQuery) -> list[LogLine]:
    return [line async for line in backend.logs(query)]


async def read_until(
    backend: KubernetesBackend, query: LogQuery, message: str, timeout: float = 20
) -> list[LogLine]:
    """The lines once `message` is among them (the kubelet writes them a moment later: bounded poll)."""
    async with asyncio.timeout(timeout):
        while True:
            lines = await read(backend, query)
            if any(line.message == message for line in lines):
                return lines
            await asyncio.sleep(0.05)


async def next_with(lines: AsyncIterator[LogLine], message: str, timeout: float = 20) -> LogLine:
    async with asyncio.timeout(timeout):
        async for line in lines:
            if line.message == message:
                return line
    raise AssertionError(f"the follow ended before {message!r}")


def test_pod_lines_parse_the_kubelet_timestamp_and_the_runtime_json() -> None:
    runtime = b'{"msg":"hi","level":"WARNING","stream":"stdout","executionId":"e1"}'
    (line,) = pod_logs.pod_lines(b"2026-12-01T11:08:45.123456789Z " + runtime + b"\n", "job-exec")
    assert line.ts_ns == 1_796_123_325_123_456_789
    assert line.line == LogLine(1_796_123_325_123, "stdout", "e1", "WARNING", "hi")
    # A JOB pod's plain lines get its execution id; a blank line is no line.
    plain = b"2026-12-01T12:08:45+01:00 Traceback {oops}\r\n2026-12-01T11:08:46Z   \n"
    (line,) = pod_logs.pod_lines(plain, "job-exec")
    assert line.line == LogLine(1_796_123_325_000, "stdout", "job-exec", "INFO", "Traceback {oops}")
    assert pod_logs.pod_lines(b"no timestamp here\n", "") == []
    assert pod_logs.timestamp_ns(b"2026-12-01T11:08:45.5Z") == 1_796_123_325_500_000_000


async def test_a_warm_functions_lines_carry_their_execution_ids(
    backend: KubernetesBackend, chatty_dir: Path
) -> None:
    spec = warm(chatty_dir)
    first = await said(backend, spec, "one")
    second = await said(backend, spec, "two")
    query = LogQuery(function="fn")
    lines = await read_until(backend, query, "said two")
    mine = [
        (line.message, line.execution_id, line.stream) for line in lines if line.message.startswith("said")
    ]
    assert mine == [("said one", first, "stdout"), ("said two", second, "stdout")]
    assert [line.ts_ms for line in lines] == sorted(line.ts_ms for line in lines)
    (only,) = await read(backend, LogQuery(function="fn", execution_id=first))
    assert only.message == "said one"
    assert len(await read(backend, LogQuery(function="fn", tail=1))) == 1
    assert await read(backend, LogQuery(function="other")) == []


async def test_a_job_attempts_lines_outlive_its_pod(
    backend: KubernetesBackend, chatty_dir: Path, cluster: FakeCluster
) -> None:
    spec = runtime_spec(chatty_dir)
    execution = await said(backend, spec, "job")
    await no_jobs_left(cluster)  # the Job and its pod are gone; their lines were kept
    lines = await read_until(backend, LogQuery(function="fn"), "said job")
    (line,) = [line for line in lines if line.message == "said job"]
    assert line.execution_id == execution
    await backend.function_removed("fn")
    assert await read(backend, LogQuery(function="fn")) == []


async def test_follow_streams_new_lines_and_survives_its_pod_being_deleted(
    backend: KubernetesBackend, chatty_dir: Path, cluster: FakeCluster, tmp_path: Path
) -> None:
    spec = warm(chatty_dir)
    await said(backend, spec, "before")
    await read_until(backend, LogQuery(function="fn"), "said before")
    follow = backend.logs(LogQuery(function="fn", follow=True))
    try:
        assert (await next_with(follow, "said before")).message == "said before"  # the backlog
        execution = await said(backend, spec, "live")
        line = await next_with(follow, "said live")
        assert line.execution_id == execution
        (pod,) = [p["metadata"]["name"] for p in ours(cluster, "pods")]
        await asyncio.to_thread(delete_pod, cluster, tmp_path, pod)
        # Its stream ended with the container; the Deployment's next pod is followed in turn.
        await wait_off_loop(
            cluster, lambda: pod not in {p["metadata"]["name"] for p in ours(cluster, "pods")}, "pod gone"
        )
        execution = await said(backend, spec, "after")
        assert (await next_with(follow, "said after")).execution_id == execution
    finally:
        await asyncio.wait_for(follow.aclose(), 10)  # type: ignore[attr-defined]


async def test_follow_sees_job_attempts_started_after_it(
    backend: KubernetesBackend, chatty_dir: Path
) -> None:
    spec = runtime_spec(chatty_dir)
    follow = backend.logs(LogQuery(function="fn", follow=True))
    waiting = asyncio.ensure_future(next_with(follow, "said later"))
    try:
        execution = await said(backend, spec, "later")
        line = await waiting
        assert line.execution_id == execution
        # Read live from the pod and kept at the end: sent once.
        extra = asyncio.ensure_future(next_with(follow, "said later", timeout=1))
        with pytest.raises(TimeoutError):
            await extra
    finally:
        await asyncio.wait_for(follow.aclose(), 10)  # type: ignore[attr-defined]


async def test_a_follow_stream_that_fails_to_open_is_opened_again(
    backend: KubernetesBackend, chatty_dir: Path, cluster: FakeCluster
) -> None:
    """A 503 when a new pod's stream is opened (no other pods/log call happens in between)."""
    spec = warm(chatty_dir)
    fault = cluster.fail("get", "pods/log", status=503, times=1)
    follow = backend.logs(LogQuery(function="fn", follow=True))  # no pod yet: no backlog read
    waiting = asyncio.ensure_future(next_with(follow, "said again"))
    try:
        execution = await said(backend, spec, "again")
        assert (await waiting).execution_id == execution
        assert fault.hits == 1
    finally:
        await asyncio.wait_for(follow.aclose(), 10)  # type: ignore[attr-defined]


async def test_follows_are_bounded(backend: KubernetesBackend, chatty_dir: Path) -> None:
    spec = warm(chatty_dir)
    await said(backend, spec, "x")
    await read_until(backend, LogQuery(function="fn"), "said x")
    logs = pod_logs.PodLogs(backend._api, "default", max_followers=1)
    try:
        following = LogQuery(function="fn", tail=1, follow=True)
        first = logs.stream(following)
        assert (await anext(first)).message == "said x"  # a backlog line: the follow is open
        with pytest.raises(TooManyFollowers):
            logs.stream(following)
        assert [line.message for line in await read_all(logs, LogQuery(function="fn", tail=1))] == ["said x"]
        await first.aclose()  # type: ignore[attr-defined]
        again = logs.stream(following)  # a slot again
        assert (await anext(again)).message == "said x"
        await again.aclose()  # type: ignore[attr-defined]
    finally:
        logs.close()


async def read_all(logs: pod_logs.PodLogs, query: LogQuery) -> list[LogLine]:
    return [line async for line in logs.stream(query)]


def delete_pod(cluster: FakeCluster, tmp_path: Path, pod: str) -> None:
    """Deleted as a user would (the official client), not by the backend."""
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # the client ships no type information
    api_client = config.new_client_from_config(str(cluster.write_kubeconfig(tmp_path / "admin")))
    try:
        client.CoreV1Api(api_client).delete_namespaced_pod(pod, "default", grace_period_seconds=0)
    finally:
        api_client.close()
