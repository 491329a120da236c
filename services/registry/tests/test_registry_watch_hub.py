"""WatchHub fan-out, ordering, overflow and shutdown."""

from __future__ import annotations

import asyncio

import pytest

from nanofaas.v1 import registry_pb2, types_pb2
from nanofaas_registry.watch import WatchClosedError, WatchHub, WatchOverflowError


def put_event(revision: int) -> registry_pb2.WatchEvent:
    return registry_pb2.WatchEvent(
        type=registry_pb2.WatchEvent.PUT,
        spec=types_pb2.FunctionSpec(name=f"fn{revision}"),
        revision=revision,
    )


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = WatchHub()
    first, second = hub.subscribe(), hub.subscribe()
    for revision in range(1, 6):
        hub.publish(put_event(revision))
    for subscription in (first, second):
        received = [(await subscription.next_event()).revision for _ in range(5)]
        assert received == [1, 2, 3, 4, 5]


async def test_subscriber_sees_only_later_events() -> None:
    hub = WatchHub()
    hub.publish(put_event(1))
    late = hub.subscribe()
    hub.publish(put_event(2))
    assert (await late.next_event()).revision == 2
    assert late.pending == 0


async def test_waiting_subscriber_is_woken_by_publish() -> None:
    hub = WatchHub()
    subscription = hub.subscribe()
    waiter = asyncio.create_task(subscription.next_event())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish(put_event(7))
    assert (await asyncio.wait_for(waiter, 5)).revision == 7


async def test_async_iteration() -> None:
    hub = WatchHub()
    subscription = hub.subscribe()
    hub.publish(put_event(1))
    hub.publish(put_event(2))
    received = []
    async for event in subscription:
        received.append(event.revision)
        if len(received) == 2:
            break
    assert received == [1, 2]


async def test_lagging_subscriber_is_dropped_without_affecting_others() -> None:
    hub = WatchHub(subscriber_capacity=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    for revision in range(1, 4):
        hub.publish(put_event(revision))
        assert (await fast.next_event()).revision == revision
    hub.publish(put_event(4))
    assert hub.subscriber_count == 1
    assert not slow.active
    with pytest.raises(WatchOverflowError):
        await slow.next_event()
    assert (await fast.next_event()).revision == 4


async def test_close_subscription_unsubscribes() -> None:
    hub = WatchHub()
    subscription = hub.subscribe()
    assert hub.subscriber_count == 1
    subscription.close()
    subscription.close()
    assert hub.subscriber_count == 0
    hub.publish(put_event(1))
    assert subscription.pending == 0


async def test_hub_close_drains_then_ends_subscriptions() -> None:
    hub = WatchHub()
    subscription = hub.subscribe()
    hub.publish(put_event(1))
    waiter_hub = WatchHub()
    idle = waiter_hub.subscribe()
    idle_task = asyncio.create_task(idle.next_event())
    await asyncio.sleep(0)
    hub.close()
    waiter_hub.close()
    assert (await subscription.next_event()).revision == 1
    with pytest.raises(WatchClosedError):
        await subscription.next_event()
    with pytest.raises(WatchClosedError):
        await asyncio.wait_for(idle_task, 5)
    with pytest.raises(WatchClosedError):
        await hub.subscribe().next_event()
    assert hub.subscriber_count == 0


async def test_wait_for_subscriber_count() -> None:
    hub = WatchHub()
    subscription = hub.subscribe()
    waiter = asyncio.create_task(hub.wait_for_subscriber_count(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    subscription.close()
    await asyncio.wait_for(waiter, 5)
    assert hub.subscriber_count == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="subscriber_capacity"):
        WatchHub(subscriber_capacity=0)
