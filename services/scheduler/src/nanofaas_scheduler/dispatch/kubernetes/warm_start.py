"""WARM pods that never become Ready within a bound: one timer per pod, from when the watch saw it.

A pod that cannot be placed (Unschedulable: the shorter unschedulable bound) or stays Pending,
ContainerCreating (a Secret volume that cannot be mounted) or unready past the start bound is
reported once through `on_stuck`; warm.py then fails the function's waiting and new requests
with the reason while no pod is ready. A pod that becomes Ready, goes away or has served
before is forgotten (a restart of a pod that served is a restart to wait for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from nanofaas_scheduler.dispatch.kubernetes.pods import judge

OnStuck = Callable[[str, float, dict[str, Any]], None]


class StuckPods:
    def __init__(self, start_after_s: float, unschedulable_after_s: float, on_stuck: OnStuck) -> None:
        self._start_after_s = start_after_s
        self._unschedulable_after_s = min(unschedulable_after_s, start_after_s)
        self._on_stuck = on_stuck
        self._first_seen: dict[str, float] = {}
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._pods: dict[str, dict[str, Any]] = {}  # the last status seen, to say why

    def pending(self, name: str, pod: dict[str, Any]) -> bool:
        """`pod` is not Ready (and never was): (re)arm its timer for the bound its status calls for.

        True when the bound changed (an Unschedulable pod was placed): a verdict given under
        the old bound no longer holds.
        """
        loop = asyncio.get_running_loop()
        self._pods[name] = pod
        first = self._first_seen.setdefault(name, loop.time())
        bound = self._unschedulable_after_s if judge(pod).unschedulable else self._start_after_s
        current = self._timers.get(name)
        if current is not None:
            if current[0] == bound:
                return False
            current[1].cancel()
        self._timers[name] = (bound, loop.call_at(first + bound, self._fire, name, bound))
        return current is not None

    def _fire(self, name: str, bound: float) -> None:
        pod = self._pods.get(name)
        if pod is not None:
            self._on_stuck(name, bound, pod)

    def is_pending(self, name: str) -> bool:
        return name in self._first_seen

    def last(self, name: str) -> dict[str, Any] | None:
        return self._pods.get(name)

    def forget(self, name: str) -> None:
        self._first_seen.pop(name, None)
        self._pods.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer[1].cancel()

    def retain(self, names: Iterable[str]) -> None:
        """After a re-list: pods not in it are gone."""
        keep = set(names)
        for name in [n for n in self._first_seen if n not in keep]:
            self.forget(name)

    def close(self) -> None:
        for name in list(self._first_seen):
            self.forget(name)
