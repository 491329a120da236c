"""A broadcast hub that fans registry WatchEvents out to every subscriber.

Publishing never blocks: each subscriber has a bounded queue, and a subscriber that
falls that far behind is dropped (it re-watches and gets a fresh snapshot) instead of
making the registry hold an unbounded backlog for it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from nanofaas.v1 import registry_pb2

DEFAULT_SUBSCRIBER_CAPACITY = 10_000


class WatchOverflowError(Exception):
    """The subscriber fell more than its capacity behind and was dropped."""


class WatchClosedError(Exception):
    """The hub was closed (the registry is shutting down)."""


class Subscription:
    """One watcher's ordered queue of events; iterate it or call next_event()."""

    def __init__(self, hub: WatchHub, capacity: int) -> None:
        self._hub = hub
        self._capacity = capacity
        self._events: deque[registry_pb2.WatchEvent] = deque()
        self._wakeup = asyncio.Event()
        self._overflowed = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Events queued but not yet taken."""
        return len(self._events)

    @property
    def active(self) -> bool:
        """Whether the hub still delivers events to this subscription."""
        return not (self._closed or self._overflowed)

    def offer(self, event: registry_pb2.WatchEvent) -> bool:
        """Queues event without blocking; False (and the subscription is dead) when it is full."""
        if not self.active:
            return False
        if len(self._events) >= self._capacity:
            self._overflowed = True
            self._wakeup.set()
            return False
        self._events.append(event)
        self._wakeup.set()
        return True

    async def next_event(self) -> registry_pb2.WatchEvent:
        """The next event in publish order.

        Raises WatchOverflowError once the subscriber has fallen behind, even if events are
        still queued: the stream is incomplete, so the watcher must start over anyway.
        """
        while True:
            if self._overflowed:
                raise WatchOverflowError(f"watcher fell more than {self._capacity} events behind")
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise WatchClosedError("watch hub closed")
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Stops delivery and unsubscribes; safe to call more than once."""
        self._mark_closed()
        self._hub.unsubscribe(self)

    def _mark_closed(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> registry_pb2.WatchEvent:
        return await self.next_event()


class WatchHub:
    """Delivers every published event, in order, to every live subscription."""

    def __init__(self, subscriber_capacity: int = DEFAULT_SUBSCRIBER_CAPACITY) -> None:
        if subscriber_capacity < 1:
            raise ValueError("subscriber_capacity must be at least 1")
        self._capacity = subscriber_capacity
        self._subscriptions: set[Subscription] = set()
        self._membership_changed = asyncio.Event()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription:
        """A new subscription that receives every event published from now on."""
        subscription = Subscription(self, self._capacity)
        if self._closed:
            subscription._mark_closed()
        else:
            self._subscriptions.add(subscription)
            self._membership_changed.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            self._membership_changed.set()

    async def wait_for_subscriber_count(self, count: int) -> None:
        """Returns once exactly count subscriptions are live (lets shutdown and tests await watchers)."""
        while len(self._subscriptions) != count:
            self._membership_changed.clear()
            await self._membership_changed.wait()

    def publish(self, event: registry_pb2.WatchEvent) -> None:
        """Hands event to every subscriber; those that are full are dropped."""
        for subscription in tuple(self._subscriptions):
            if not subscription.offer(event):
                self.unsubscribe(subscription)

    def close(self) -> None:
        """Ends every subscription; they raise WatchClosedError once drained."""
        self._closed = True
        for subscription in tuple(self._subscriptions):
            subscription._mark_closed()
        self._subscriptions.clear()
        self._membership_changed.set()
