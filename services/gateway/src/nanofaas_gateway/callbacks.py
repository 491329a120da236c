"""Completion callbacks (X-Callback-Url): the gateway POSTs an ended execution's REST JSON.

The scheduler keeps the deliveries that are due in an outbox and offers them on the
Callbacks stream; the gateway owns the REST shape of an execution, so it renders each
one with execution_status_body, POSTs it with a few jittered retries and acknowledges it
once delivered or given up. A delivery the gateway did not acknowledge (it stopped, or
the stream broke) is offered again to the next subscriber: delivery is at least once.

The subscription starts with the gateway and never holds up start-up or readiness: it
reconnects on its own with a bounded back-off.

aiohttp is imported with the first delivery, not with the gateway: ~9 MiB of resident
memory that a gateway whose callers never ask for a callback does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import grpc
from prometheus_client import CollectorRegistry, Counter

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc
from nanofaas_gateway.convert import JSON, execution_status_body
from nanofaas_gateway.outbound_policy import OutboundPolicy, UrlNotAllowed

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

DELIVERED = "delivered"
FAILED = "failed"
_RETRIED_CLIENT_ERRORS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one callback is tried: attempts, jittered exponential back-off, per-attempt timeout."""

    attempts: int = 4
    base_delay_s: float = 0.2
    timeout_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        return self.base_delay_s * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Back-off between attempts to subscribe: doubled per failure, capped, jittered."""

    first_s: float = 0.1
    max_s: float = 5.0

    def after(self, failures: int) -> float:
        return min(self.first_s * 2.0 ** max(failures - 1, 0), self.max_s) * random.uniform(0.5, 1.0)


class CallbackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.callbacks = Counter(
            "gateway_callbacks_total",
            "Completion callbacks by outcome: delivered, or failed after every attempt",
            ["outcome"],
            registry=registry,
        )
        self.delivered = self.callbacks.labels(DELIVERED)
        self.failed = self.callbacks.labels(FAILED)


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL: what logs may show (a path or query can carry a secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "<invalid URL>"


async def post_callback(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    policy: RetryPolicy,
    outbound: OutboundPolicy | None = None,
) -> str | None:
    """POST body to url under the policy; None once delivered, else what went wrong last.

    A 2xx is delivered; a 4xx other than 408/429 is final (the receiver refuses this body);
    anything else, a timeout or a connection failure is tried again. A URL the outbound
    policy denies (outbound_policy.py) is never called: that is final too.
    """
    if outbound is not None:
        try:
            await outbound.check(url)
        except UrlNotAllowed as exc:
            return str(exc)
    import aiohttp  # lazily: see the module's docstring

    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    problem = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": JSON}, timeout=timeout
            ) as response:
                if response.status < 300:
                    return None
                problem = f"HTTP {response.status}"
                if 400 <= response.status < 500 and response.status not in _RETRIED_CLIENT_ERRORS:
                    return problem
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt < policy.attempts:
            await asyncio.sleep(policy.delay_s(attempt))
    return problem


class CallbackDelivery:
    """Subscribes to the scheduler's Callbacks stream and delivers what it offers.

    `run()` keeps one subscription open (reconnecting after any failure); `close()` lets
    deliveries under way finish within a grace period, acknowledges them and leaves.
    """

    def __init__(
        self,
        stub: scheduler_pb2_grpc.SchedulerAsyncStub,
        metrics: CallbackMetrics,
        *,
        max_concurrent: int = 64,
        policy: RetryPolicy | None = None,
        reconnect: Reconnect | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self._stub = stub
        self._outbound = outbound
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self._reconnect = reconnect or Reconnect()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._session: aiohttp.ClientSession | None = None
        # Deliveries under way, by delivery id (with the execution, to tell ids of a
        # restarted scheduler apart from those of the one before).
        self._active: dict[int, tuple[str, asyncio.Task[None]]] = {}
        # Finished while no stream was open to acknowledge them: acknowledged on the next one.
        self._finished: dict[int, str] = {}
        self._acks: asyncio.Queue[scheduler_pb2.CallbackAck | None] | None = None
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._opened = 0  # subscriptions established so far
        # Set while a subscription is open (tests and logs wait for it).
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        """Subscribe in the background (call inside the serving event loop)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        """Stay subscribed until close(): reconnect after any failure, with a bounded back-off."""
        failures = 0
        while not self._stopping.is_set():
            opened = self._opened
            problem = ""
            try:
                await self._subscribe()
            except grpc.aio.AioRpcError as exc:
                problem = exc.code().name
            except Exception:  # a bug must not end the subscription for good
                log.exception("callback stream broke")
            if self._opened != opened:
                failures = 0  # this attempt got through: any failure now starts a new streak
            if problem:
                # The first failure of a streak is news; the rest are the same news again.
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "callback stream failed", extra={"code": problem})
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._reconnect.after(failures))

    async def _subscribe(self) -> None:
        """One subscription, until the stream ends."""
        acks: asyncio.Queue[scheduler_pb2.CallbackAck | None] = asyncio.Queue()
        for delivery_id in self._finished:
            acks.put_nowait(scheduler_pb2.CallbackAck(delivery_id=delivery_id))
        self._finished.clear()
        self._acks = acks
        call = self._stub.Callbacks(_drain(acks))
        try:
            await call.initial_metadata()  # the scheduler sends it at once: subscribed
            if not call.done():
                self._opened += 1
                self.subscribed.set()
                log.info("callback stream open")
            async for due in call:
                await self._slots.acquire()
                if self._stopping.is_set():
                    # Left unacknowledged: the scheduler offers it to the next gateway once
                    # the stream ends, which close() asks for by half-closing it.
                    self._slots.release()
                    continue
                self._take(due)
        finally:
            self.subscribed.clear()
            if self._acks is acks:
                self._acks = None
            acks.put_nowait(None)
            if not call.done():
                call.cancel()

    def _take(self, due: scheduler_pb2.CallbackDue) -> None:
        """Start delivering, unless this delivery is already under way or done (an offer again)."""
        execution_id = due.status.execution_id
        active = self._active.get(due.delivery_id)
        if active is not None and active[0] == execution_id:
            self._slots.release()
            return
        if self._finished.get(due.delivery_id) == execution_id:
            self._slots.release()
            self._acknowledge(due.delivery_id, execution_id)
            return
        task = asyncio.get_running_loop().create_task(self._deliver(due))
        self._active[due.delivery_id] = (execution_id, task)

    async def _deliver(self, due: scheduler_pb2.CallbackDue) -> None:
        execution_id = due.status.execution_id
        try:
            if self._session is None:
                import aiohttp  # lazily: see the module's docstring

                self._session = aiohttp.ClientSession()
            body = execution_status_body(due.status)
            try:
                problem = await post_callback(self._session, due.url, body, self._policy, self._outbound)
            except Exception as exc:  # a bug must not wedge the delivery: it is given up like a failure
                log.exception("callback delivery failed", extra={"executionId": execution_id})
                problem = type(exc).__name__
            if problem is None:
                self._metrics.delivered.inc()
            else:
                self._metrics.failed.inc()
                log.warning(
                    "callback not delivered",
                    extra={"executionId": execution_id, "target": url_origin(due.url), "problem": problem},
                )
            self._acknowledge(due.delivery_id, execution_id)
        finally:
            entry = self._active.get(due.delivery_id)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._active[due.delivery_id]
            self._slots.release()

    def _acknowledge(self, delivery_id: int, execution_id: str) -> None:
        if self._acks is not None:
            self._acks.put_nowait(scheduler_pb2.CallbackAck(delivery_id=delivery_id))
        else:
            self._finished[delivery_id] = execution_id

    async def close(self, grace_s: float) -> None:
        """Stop taking deliveries, give those under way `grace_s`, acknowledge them, unsubscribe."""
        self._stopping.set()
        tasks = [task for _, task in self._active.values()]
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=grace_s)
            for task in unfinished:
                task.cancel()  # not acknowledged: the scheduler offers it again
            await asyncio.gather(*unfinished, return_exceptions=True)
        if self._acks is not None:
            self._acks.put_nowait(None)  # half-close after the acks: the scheduler ends the stream
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._runner), 1.0)
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


async def _drain(
    acks: asyncio.Queue[scheduler_pb2.CallbackAck | None],
) -> AsyncIterator[scheduler_pb2.CallbackAck]:
    while (ack := await acks.get()) is not None:
        yield ack
