"""Cold-start phases of new WARM pods, from the pod watch: created -> scheduled -> running -> ready.

A pod counts from the moment the watch reports it ADDED (pods listed at start or after a
re-list were not seen being created, so they are not measured). Each phase is recorded the
first time it is seen; at Ready the pod's IP waits for its first answered request, the
`first_result` phase. A pod deleted before it got there is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PhaseSink = Callable[[str, float], None]  # phase, seconds since created


class WarmPhases:
    def __init__(self, sink: PhaseSink, clock: Callable[[], float]) -> None:
        self._sink = sink
        self._clock = clock
        self._starting: dict[str, tuple[float, set[str]]] = {}  # pod name -> (created, phases seen)
        self._first_result: dict[str, float] = {}  # pod IP -> created

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) of a WARM pod."""
        metadata = pod.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if kind == "DELETED":
            self._starting.pop(name, None)
            self._first_result.pop(str((pod.get("status") or {}).get("podIP", "")), None)
            return
        if kind == "ADDED" and name not in self._starting:
            self._starting[name] = (self._clock(), set())
        tracked = self._starting.get(name)
        if tracked is None:
            return
        created, seen = tracked
        status = pod.get("status") or {}
        reached = []
        if (pod.get("spec") or {}).get("nodeName"):
            reached.append("scheduled")
        if status.get("phase") == "Running":
            reached.append("running")
        conditions = status.get("conditions") or ()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if ready:
            reached.append("ready")
        for phase in reached:
            if phase not in seen:
                seen.add(phase)
                self._sink(phase, self._clock() - created)
        if ready:
            del self._starting[name]
            if status.get("podIP"):
                self._first_result[str(status["podIP"])] = created

    def answered(self, ip: str) -> None:
        """A request to the pod at `ip` got its answer: the first one ends that pod's cold start."""
        created = self._first_result.pop(ip, None)
        if created is not None:
            self._sink("first_result", self._clock() - created)

    def forget(self) -> None:
        """After a re-list nothing seen is known to be new."""
        self._starting.clear()
