"""A function's log lines on the Kubernetes backend: its pods' logs, read through the API.

Lines come from `GET pods/{name}/log?timestamps=true` (what `read_namespaced_pod_log`
calls) of every pod of the function, WARM and JOB, with a bounded tail and byte
limit per pod; the kubelet's timestamp is the line's. Each line is parsed by the
scheduler's one rule (dispatch.logs.parse_line): the runtime's JSON lines carry
their executionId, and a JOB pod's other lines get its attempt's execution id.

A JOB pod is deleted when its attempt ends, so its lines are read then (`keep`)
into a bounded LogBook, and served from there afterwards. `follow` watches the
function's pods and streams each started container's log (follow=true) as it
grows: a pod deleted meanwhile ends its stream when its container stops, and
never the follow. Blocking reads run on a bounded thread pool of their own
(a follow holds a thread while it waits for lines), never on the event loop
nor on the pool dispatch uses; followers are bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.api import POD_LOGS, PODS, ApiError, KubeApi
from nanofaas_scheduler.dispatch.kubernetes.template import FUNCTION_CONTAINER
from nanofaas_scheduler.dispatch.kubernetes.watch import SYNC, Watcher
from nanofaas_scheduler.dispatch.logs import (
    DEFAULT_LINES_PER_FUNCTION,
    LogBook,
    LogLine,
    LogQuery,
    TooManyFollowers,
    parse_line,
    select,
)

log = logging.getLogger(__name__)

# Lines read per pod when the query names no tail (the local backend keeps as many per function).
DEFAULT_TAIL = DEFAULT_LINES_PER_FUNCTION
# Bytes read per pod and request at most (a tail of very long lines stays bounded).
LIMIT_BYTES = 2 * 1024 * 1024
# Pods read per request at most, the newest (a function with many JOB attempts running at once).
MAX_PODS = 50
# Follows at once on one backend: each holds a pod watch and a thread per followed container.
DEFAULT_MAX_FOLLOWERS = 16
# Threads for followed log streams (shared by all followers; a stream waits for a free one).
DEFAULT_STREAM_WORKERS = 16
# A followed stream that stays silent this long is re-opened (dead connections end this way).
_FOLLOW_READ_TIMEOUT_S = 60.0
_REOPEN_PAUSE_S = 1.0
# Answers to opening a log stream that mean the container run cannot be read (any more).
_RUN_OVER = frozenset({400, 403, 404})
_FOLLOWER_QUEUE = 1000
_SEEN = 4096  # recent line keys a follower remembers, so no line is sent twice
_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def timestamp_ns(stamp: bytes) -> int | None:
    """An RFC 3339 timestamp (the kubelet's RFC3339Nano) in Unix nanoseconds, or None."""
    match = _STAMP.fullmatch(stamp)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    offset = "+00:00" if zone == b"Z" else zone.decode()
    moment = datetime.datetime.fromisoformat(whole.decode() + offset)
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or b"0").ljust(9, b"0"))


@dataclass(frozen=True, slots=True)
class PodLine:
    ts_ns: int
    line: LogLine


def parse_pod_line(raw: bytes, execution_id: str) -> PodLine | None:
    """`<timestamp> <text>` as the API returns it with timestamps=true; None for a blank line."""
    stamp, _, text = raw.rstrip(b"\r\n").partition(b" ")
    ts_ns = timestamp_ns(stamp)
    if ts_ns is None or not text.strip():
        return None
    line = parse_line(text.rstrip(b"\r"), ts_ns // 1_000_000, "stdout")
    if not line.execution_id and execution_id:
        line = replace(line, execution_id=execution_id)
    return PodLine(ts_ns, line)


def pod_lines(data: bytes, execution_id: str) -> list[PodLine]:
    parsed = (parse_pod_line(raw, execution_id) for raw in data.split(b"\n"))
    return [line for line in parsed if line is not None]


def _function_container(pod: dict[str, Any]) -> dict[str, Any]:
    for container in (pod.get("spec") or {}).get("containers") or ():
        if container.get("name") == FUNCTION_CONTAINER:
            return dict(container)
    return {}


def pod_execution_id(pod: dict[str, Any]) -> str:
    """A JOB pod's execution id, exactly (its container's EXECUTION_ID); "" for a WARM pod."""
    for variable in _function_container(pod).get("env") or ():
        if variable.get("name") == "EXECUTION_ID":
            return str(variable.get("value") or "")
    return ""


def running_container(pod: dict[str, Any]) -> str:
    """The id of the function container's current run while it runs, else ""."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return ""
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == FUNCTION_CONTAINER and "running" in (status.get("state") or {}):
            return str(status.get("containerID") or "running")
    return ""


def is_of(pod: dict[str, Any], function: str) -> bool:
    """The label selects by a mapped name; the annotation is the exact one."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get(naming.FUNCTION_ANNOTATION) == function


def _key(line: LogLine) -> tuple[int, str, str]:
    return (line.ts_ms, line.execution_id, line.message)


@dataclass(slots=True)
class _Stream:
    """One followed container run."""

    container_id: str
    task: asyncio.Task[None]
    response: Any = None


@dataclass(slots=True, eq=False)  # a set member: by identity
class _Follower:
    query: LogQuery
    queue: asyncio.Queue[LogLine] = field(default_factory=lambda: asyncio.Queue(_FOLLOWER_QUEUE))
    # The last line already sent of each pod (its kubelet timestamp): later reads skip up to it.
    sent_ns: dict[str, int] = field(default_factory=dict)
    streams: dict[str, _Stream] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # as the watch last saw them
    seen: set[tuple[int, str, str]] = field(default_factory=set)
    seen_order: deque[tuple[int, str, str]] = field(default_factory=deque)
    closed: bool = False

    def first_time(self, line: LogLine) -> bool:
        key = _key(line)
        if key in self.seen:
            return False
        self.seen.add(key)
        self.seen_order.append(key)
        if len(self.seen_order) > _SEEN:
            self.seen.discard(self.seen_order.popleft())
        return True

    def offer(self, line: LogLine) -> None:
        if not self.query.matches(line) or not self.first_time(line):
            return
        if self.queue.full():  # a reader that cannot keep up loses its oldest pending lines
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(line)


class PodLogs:
    """Serves Dispatcher.logs for the Kubernetes backend."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        *,
        kept_lines: int = DEFAULT_LINES_PER_FUNCTION,
        max_followers: int = DEFAULT_MAX_FOLLOWERS,
        stream_workers: int = DEFAULT_STREAM_WORKERS,
        watch_timeout_s: int = 60,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._book = LogBook(kept_lines)  # JOB attempts' lines, read as they end
        self._max_followers = max_followers
        self._followers: set[_Follower] = set()
        self._watch_timeout_s = watch_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=stream_workers, thread_name_prefix="kube-logs")

    # -- JOB attempts ------------------------------------------------------------------------
    async def keep(self, function: str, execution_id: str, pod: str) -> None:
        """Read an ended JOB attempt's pod log into the book (before its Job is deleted)."""
        if not pod:
            return
        lines = await self._read(pod, execution_id, DEFAULT_TAIL)
        for line in lines:
            self._book.append(function, line.line)
            for follower in self._followers:
                if follower.query.function == function:
                    follower.offer(line.line)

    def forget(self, function: str) -> None:
        self._book.forget(function)

    # -- reading -----------------------------------------------------------------------------
    async def _read(self, pod: str, execution_id: str, tail: int) -> list[PodLine]:
        query: dict[str, str | int | bool] = {
            "container": FUNCTION_CONTAINER,
            "timestamps": "true",
            "tailLines": tail,
            "limitBytes": LIMIT_BYTES,
        }
        path = PODS.path(self._namespace, pod) + "/log"
        try:
            data = await self._api.call("GET", "get", POD_LOGS, path, query=query, raw=True)
        except ApiError as exc:  # not started yet (400), gone (404): no lines from it
            log.debug("pod log not readable", extra={"pod": pod, "error": str(exc)})
            return []
        return pod_lines(bytes(data), execution_id)

    async def _pods(self, function: str) -> list[dict[str, Any]]:
        listed = await self._api.list(PODS, self._namespace, naming.selector(function, None))
        pods = [pod for pod in listed.get("items") or () if is_of(pod, function)]
        pods.sort(key=lambda pod: str(pod["metadata"].get("creationTimestamp", "")))
        return pods[-MAX_PODS:]

    async def _backlog(self, query: LogQuery) -> tuple[list[LogLine], dict[str, int]]:
        """The kept and the pods' lines the query asks for, oldest first; and each pod's last line."""
        tail = query.tail or DEFAULT_TAIL
        try:
            pods = await self._pods(query.function)
        except ApiError as exc:
            log.warning(
                "cannot list a function's pods", extra={"function": query.function, "error": str(exc)}
            )
            pods = []
        names = [str(pod["metadata"]["name"]) for pod in pods]
        read = await asyncio.gather(
            *(self._read(name, pod_execution_id(pod), tail) for name, pod in zip(names, pods, strict=True))
        )
        last = {name: lines[-1].ts_ns for name, lines in zip(names, read, strict=True) if lines}
        merged: dict[tuple[int, str, str], LogLine] = {_key(line): line for line in self._book.read(query)}
        for lines in read:
            for line in lines:
                merged.setdefault(_key(line.line), line.line)
        ordered = sorted(merged.values(), key=lambda line: line.ts_ms)
        return select(ordered, query), last

    def stream(self, query: LogQuery) -> AsyncIterator[LogLine]:
        """The lines, oldest first; with follow, then new ones until the caller stops iterating."""
        if query.follow and len(self._followers) >= self._max_followers:
            raise TooManyFollowers(f"{self._max_followers} log follows are open on this scheduler already")
        return self._follow(query) if query.follow else self._once(query)

    async def _once(self, query: LogQuery) -> AsyncIterator[LogLine]:
        lines, _ = await self._backlog(query)
        for line in lines:
            yield line

    async def _follow(self, query: LogQuery) -> AsyncIterator[LogLine]:
        # Registered before the backlog is read: a JOB attempt kept meanwhile is offered, not lost.
        follower = _Follower(query)
        self._followers.add(follower)
        watcher: Watcher | None = None
        try:
            backlog, follower.sent_ns = await self._backlog(query)
            # A line offered while the backlog was read is in the queue already: sent from there.
            backlog = [line for line in backlog if follower.first_time(line)]
            watcher = Watcher(
                self._api,
                PODS,
                self._namespace,
                naming.selector(query.function, None),
                functools.partial(self._on_pod, follower),
                watch_timeout_s=self._watch_timeout_s,
            )
            watcher.start()
            for line in backlog:
                yield line
            while True:
                yield await follower.queue.get()
        finally:
            follower.closed = True
            self._followers.discard(follower)
            if watcher is not None:
                watcher.stop()
            for stream in follower.streams.values():
                self._shutdown(stream)
                stream.task.cancel()

    # -- following -----------------------------------------------------------------------------
    def _on_pod(self, follower: _Follower, kind: str, obj: Any) -> None:
        if kind == SYNC:
            follower.pods = {str(pod["metadata"]["name"]): pod for pod in obj}
            for gone in [name for name in follower.streams if name not in follower.pods]:
                self._recheck(follower, gone)  # deleted while the watch was down
        elif kind == "DELETED":
            follower.pods.pop(str(obj["metadata"]["name"]), None)
            self._recheck(follower, str(obj["metadata"]["name"]))
        else:
            follower.pods[str(obj["metadata"]["name"])] = obj
        pods = obj if kind == SYNC else ([] if kind == "DELETED" else [obj])
        for pod in pods:
            if follower.closed or not is_of(pod, follower.query.function):
                continue
            name = str(pod["metadata"]["name"])
            container = running_container(pod)
            current = follower.streams.get(name)
            if not container or (current is not None and current.container_id == container):
                continue
            if current is not None and not current.task.done():
                continue  # the previous run's stream drains first; the next event starts the new one
            task = asyncio.ensure_future(self._stream_pod(follower, name, pod_execution_id(pod)))
            follower.streams[name] = _Stream(container, task)
            # A run that started while this one drained gets its stream when this one ends.
            task.add_done_callback(functools.partial(self._recheck, follower, name))

    def _recheck(self, follower: _Follower, name: str, _: object = None) -> None:
        """A pod's stream ended: follow its next run, or forget a deleted pod (memory stays bounded)."""
        pod = follower.pods.get(name)
        if pod is None:
            stream = follower.streams.get(name)
            if stream is not None and stream.task.done():
                del follower.streams[name]
                follower.sent_ns.pop(name, None)
        elif not follower.closed:
            self._on_pod(follower, "MODIFIED", pod)

    async def _stream_pod(self, follower: _Follower, pod: str, execution_id: str) -> None:
        """Follow one container run's log until it ends (its container stopped) or the follow closes."""
        loop = asyncio.get_running_loop()
        query: dict[str, str | int | bool] = {
            "container": FUNCTION_CONTAINER,
            "timestamps": "true",
            "follow": "true",
            # Not the query's tail (that bounds the backlog): a new run's first lines are all new.
            "tailLines": DEFAULT_TAIL,
            "limitBytes": LIMIT_BYTES,
        }
        path = PODS.path(self._namespace, pod) + "/log"
        stream = follower.streams[pod]
        while not follower.closed:
            try:
                response = await loop.run_in_executor(
                    self._pool,
                    functools.partial(
                        self._api.request,
                        "GET",
                        "get",
                        POD_LOGS,
                        path,
                        query=query,
                        stream=True,
                        timeout=_FOLLOW_READ_TIMEOUT_S,
                    ),
                )
            except ApiError as exc:
                if exc.status in _RUN_OVER:  # not started, or gone: this run has nothing (more) to say
                    return
                # Throttled, a server error, no answer: try again after the pause.
                log.debug("pod log follow failed to open", extra={"pod": pod, "error": str(exc)})
                await asyncio.sleep(_REOPEN_PAUSE_S)
                continue
            stream.response = response
            try:
                ended = await self._drain(follower, pod, execution_id, response)
            finally:
                stream.response = None
                with contextlib.suppress(Exception):
                    response.release_conn()
            if ended:
                return
            # Cut or silent for too long: read again (after a pause, so a broken connection
            # cannot spin), skipping what was sent (by timestamp).
            await asyncio.sleep(_REOPEN_PAUSE_S)

    async def _drain(self, follower: _Follower, pod: str, execution_id: str, response: Any) -> bool:
        """Offer a response's lines; True when it ended cleanly (the run is over)."""
        loop = asyncio.get_running_loop()
        chunks: Iterator[bytes] = response.stream(65536)
        buffer = b""
        while True:
            try:
                chunk = await loop.run_in_executor(self._pool, next, chunks, b"")
            except Exception as exc:  # a read timeout or a cut connection: re-open
                log.debug("pod log follow interrupted", extra={"pod": pod, "error": str(exc)})
                return follower.closed
            if not chunk:
                break
            buffer += chunk
            *raws, buffer = buffer.split(b"\n")
            for raw in raws:
                self._offer(follower, pod, parse_pod_line(raw, execution_id))
        self._offer(follower, pod, parse_pod_line(buffer, execution_id))
        return True

    @staticmethod
    def _offer(follower: _Follower, pod: str, line: PodLine | None) -> None:
        if line is None or line.ts_ns <= follower.sent_ns.get(pod, -1):
            return
        follower.sent_ns[pod] = line.ts_ns
        follower.offer(line.line)

    @staticmethod
    def _shutdown(stream: _Stream) -> None:
        response = stream.response
        if response is not None:
            try:
                response.shutdown()  # unblocks the thread waiting in a read
            except Exception:
                log.debug("log stream not shut down", exc_info=True)

    def close(self) -> None:
        for follower in list(self._followers):
            follower.closed = True
            for stream in follower.streams.values():
                self._shutdown(stream)
        self._pool.shutdown(wait=False, cancel_futures=True)
