"""Completion callbacks: a bounded outbox of the deliveries the gateway makes.

When an execution whose caller gave a callback URL ends, its ExecutionStatus message
waits here as a CallbackDue. A gateway subscribed with the Callbacks RPC takes it,
renders the REST JSON (the gateway owns that shape), POSTs it and acknowledges it; an
acknowledged delivery is forgotten. Deliveries a subscriber has not acknowledged when
its stream ends go back to the front of the queue for the next subscriber, so delivery
is at least once. With several subscribers each delivery goes to one of them; each
holds at most `window` unacknowledged deliveries, so none hoards the queue.

The outbox is bounded (NANOFAAS_MAX_PENDING_CALLBACKS): past the bound the oldest
waiting delivery is dropped, with a warning and a count, so a gateway that stays away
cannot make the scheduler hold an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_scheduler.core.execution import Execution

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000
DEFAULT_WINDOW = 64

StatusOf = Callable[[Execution], types_pb2.ExecutionStatus]


class _Subscriber:
    """One Callbacks stream: the deliveries it holds unacknowledged, and its wake-up call."""

    __slots__ = ("leaving", "unacked", "wakeup")

    def __init__(self) -> None:
        self.unacked: dict[int, scheduler_pb2.CallbackDue] = {}
        self.wakeup = asyncio.Event()
        self.leaving = False

    def wake(self) -> None:
        self.wakeup.set()


class CallbackOutbox:
    """Due deliveries, waiting or held by a subscriber until acknowledged.

    Call it with each ended execution (a Scheduler.on_end listener); serve() is the
    Callbacks RPC. `status_of` builds the ExecutionStatus message (the one GetExecution
    answers), so the gateway renders a callback exactly as it renders a status query.
    """

    def __init__(
        self,
        status_of: StatusOf,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        window: int = DEFAULT_WINDOW,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if max_pending < 1 or window < 1:
            raise ValueError("max_pending and window must be at least 1")
        self._status_of = status_of
        self._max_pending = max_pending
        self._window = window
        self._ids = itertools.count(1)
        self._waiting: OrderedDict[int, scheduler_pb2.CallbackDue] = OrderedDict()
        self._holders: dict[int, _Subscriber] = {}
        self._subscribers: set[_Subscriber] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._dropped = Counter(
            "callbacks_dropped_total",
            "Completion callbacks dropped undelivered because the outbox was full",
            registry=registry,
        )
        Gauge(
            "callbacks_pending",
            "Completion callbacks due and not yet acknowledged by a gateway",
            registry=registry,
        ).set_function(lambda: self.pending)

    @property
    def pending(self) -> int:
        """Deliveries not acknowledged yet: waiting, or held by a subscriber."""
        return len(self._waiting) + len(self._holders)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def __call__(self, execution: Execution) -> None:
        """An execution ended: queue its delivery if its caller asked for a callback."""
        if not execution.callback_url:
            return
        if self.pending >= self._max_pending:
            self._drop_oldest()
        delivery_id = next(self._ids)
        self._waiting[delivery_id] = scheduler_pb2.CallbackDue(
            delivery_id=delivery_id, url=execution.callback_url, status=self._status_of(execution)
        )
        self._empty.clear()
        self._wake_all()

    def ack(self, delivery_id: int) -> None:
        """Forget a delivery (delivered or given up), whoever holds it; unknown ids are ignored."""
        holder = self._holders.pop(delivery_id, None)
        if holder is not None:
            holder.unacked.pop(delivery_id, None)
            holder.wake()
        else:
            self._waiting.pop(delivery_id, None)
        if not self.pending:
            self._empty.set()

    async def serve(
        self, acks: AsyncIterator[scheduler_pb2.CallbackAck]
    ) -> AsyncGenerator[scheduler_pb2.CallbackDue, None]:
        """One subscriber's stream: due deliveries out, acknowledgements in, until either side ends."""
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        reader = asyncio.get_running_loop().create_task(self._read_acks(acks, subscriber))
        try:
            while not subscriber.leaving:
                if self._waiting and len(subscriber.unacked) < self._window:
                    delivery_id, due = self._waiting.popitem(last=False)
                    subscriber.unacked[delivery_id] = due
                    self._holders[delivery_id] = subscriber
                    yield due
                else:
                    subscriber.wakeup.clear()
                    await subscriber.wakeup.wait()
        finally:
            reader.cancel()
            self._subscribers.discard(subscriber)
            self._give_back(subscriber)

    async def close(self, grace_s: float) -> None:
        """Give subscribed gateways up to `grace_s` to take and acknowledge what is pending, then
        end every stream (what is still pending is lost with the process)."""
        if self._subscribers and self.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), grace_s)
        for subscriber in self._subscribers:
            subscriber.leaving = True
            subscriber.wake()

    async def _read_acks(
        self, acks: AsyncIterator[scheduler_pb2.CallbackAck], subscriber: _Subscriber
    ) -> None:
        try:
            async for ack in acks:
                self.ack(ack.delivery_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken stream ends this subscriber, never the outbox
            log.debug("callback stream ended", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            # The subscriber closed its side (or the RPC ended): end the stream.
            subscriber.leaving = True
            subscriber.wake()

    def _give_back(self, subscriber: _Subscriber) -> None:
        """A subscriber left: what it held unacknowledged goes to the front, oldest first."""
        for delivery_id in sorted(subscriber.unacked, reverse=True):
            self._holders.pop(delivery_id, None)
            self._waiting[delivery_id] = subscriber.unacked[delivery_id]
            self._waiting.move_to_end(delivery_id, last=False)
        subscriber.unacked.clear()
        self._wake_all()

    def _drop_oldest(self) -> None:
        """Make room: the oldest waiting delivery goes (or, if all are held, the oldest held)."""
        if self._waiting:
            _, due = self._waiting.popitem(last=False)
        else:
            delivery_id = min(self._holders)
            due = self._holders.pop(delivery_id).unacked.pop(delivery_id)
        self._dropped.inc()
        log.warning(
            "callback dropped: outbox full",
            extra={
                "executionId": due.status.execution_id,
                "functionName": due.status.function_name,
                "maxPending": self._max_pending,
            },
        )

    def _wake_all(self) -> None:
        for subscriber in self._subscribers:
            subscriber.wake()
