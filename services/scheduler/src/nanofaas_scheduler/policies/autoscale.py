"""How many replicas a WARM function should have: a pure policy in the spirit of Knative's KPA.

Demand is what only the scheduler knows exactly: invocations in flight plus
those queued for the function. The policy is fed samples of it and answers a
desired replica count:

* stable: ceil(average demand over the stable window / targetInFlight);
* panic: ceil(peak demand over the short panic window / targetInFlight). When
  that is at least `panic_threshold` times the ready replicas (or any demand
  meets zero ready replicas), the policy panics: it follows the panic figure
  up at once and never scales down until the panic window has passed without
  another trigger;
* scale-down: a lower recommendation takes effect only once every
  recommendation of the last `scaleDownDelayMs` was that low (the result is
  the highest recommendation in that window), so short lulls never remove a
  replica and oscillating demand never flaps;
* the result is clamped to [minReplicas, maxReplicas].

No clock of its own: every call reads the injected one, so tests drive time
in units and the scaler passes the event loop's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nanofaas.v1 import types_pb2

# The registry's defaults (validation.py); a spec stored before autoscaling existed lacks the fields.
DEFAULT_MIN_REPLICAS = 1
DEFAULT_TARGET_IN_FLIGHT = 1
DEFAULT_SCALE_DOWN_DELAY_MS = 60_000


@dataclass(frozen=True, slots=True)
class ScalingBounds:
    """The function's own scaling fields, defaults applied."""

    min_replicas: int
    max_replicas: int
    target_in_flight: int
    scale_down_delay_s: float


def bounds_of(spec: types_pb2.FunctionSpec, replica_capacity: int = 0) -> ScalingBounds:
    """The spec's scaling fields; `replica_capacity` > 0 caps what one replica can take at once.

    A local process serves one invocation at a time (capacity 1), so sizing it for
    more would only leave work waiting for a replica.
    """
    concurrency = max(1, spec.concurrency)
    maximum = spec.max_replicas if spec.HasField("max_replicas") else concurrency
    maximum = max(1, maximum)
    minimum = spec.min_replicas if spec.HasField("min_replicas") else DEFAULT_MIN_REPLICAS
    minimum = min(max(0, minimum), maximum)
    target = spec.target_in_flight if spec.HasField("target_in_flight") else DEFAULT_TARGET_IN_FLIGHT
    target = max(1, target)
    if replica_capacity > 0:
        target = min(target, replica_capacity)
    has_delay = spec.HasField("scale_down_delay_ms")
    delay_ms = spec.scale_down_delay_ms if has_delay else DEFAULT_SCALE_DOWN_DELAY_MS
    return ScalingBounds(minimum, maximum, target, max(0, delay_ms) / 1000)


@dataclass(frozen=True, slots=True)
class Windows:
    """The platform-wide tuning (Knative's defaults: 60 s stable, 6 s panic, 200 %)."""

    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    panicking: bool


@dataclass(slots=True)
class _Bucket:
    """The samples of one short time slice: their sum, count and peak, and when the last came."""

    start: float
    last: float
    total: int = 0
    count: int = 0
    peak: int = 0


class ScalingPolicy:
    """The replica recommendation of one function; observe() demand, then decide().

    Bounded work and memory however often it is fed: samples are kept as at most
    about a thousand time buckets over the longer window, and the scale-down
    delay's highest recommendation is a sliding maximum (a monotone deque).
    """

    def __init__(self, bounds: ScalingBounds, windows: Windows, clock: Callable[[], float]) -> None:
        self.bounds = bounds
        self._windows = windows
        self._clock = clock
        self._horizon = max(windows.stable_s, windows.panic_s)
        shortest = min(windows.stable_s, windows.panic_s)
        self._bucket_s = max(shortest / 10, self._horizon / 1000, 1e-6)
        self._buckets: deque[_Bucket] = deque()  # oldest first
        # (time, recommendation) with strictly decreasing recommendations: the first is the maximum.
        self._recommendations: deque[tuple[float, int]] = deque()
        self._panic_until: float | None = None
        self.desired = bounds.min_replicas

    def observe(self, demand: int) -> None:
        """One sample of in-flight plus queued invocations, taken now."""
        now, demand = self._clock(), max(0, demand)
        bucket = self._buckets[-1] if self._buckets else None
        if bucket is None or now - bucket.start >= self._bucket_s:
            bucket = _Bucket(start=now, last=now)
            self._buckets.append(bucket)
        bucket.last = now
        bucket.total += demand
        bucket.count += 1
        bucket.peak = max(bucket.peak, demand)

    def decide(self, ready: int) -> Decision:
        """The desired replicas now, given how many replicas are ready to serve."""
        now = self._clock()
        windows, bounds = self._windows, self.bounds
        while self._buckets and self._buckets[0].last < now - self._horizon:
            self._buckets.popleft()
        stable = self._replicas_for(self._average(now - windows.stable_s))
        panic = self._replicas_for(self._peak(now - windows.panic_s))
        if panic > ready and panic >= windows.panic_threshold * ready:
            self._panic_until = now + windows.panic_s
        panicking = self._panic_until is not None and now < self._panic_until
        if not panicking:
            self._panic_until = None
        wanted = max(panic, self.desired) if panicking else stable
        recommendations = self._recommendations
        while recommendations and recommendations[-1][1] <= wanted:
            recommendations.pop()
        recommendations.append((now, wanted))
        while recommendations[0][0] < now - bounds.scale_down_delay_s:
            recommendations.popleft()  # never the one just appended: the deque stays non-empty
        self.desired = min(max(recommendations[0][1], bounds.min_replicas), bounds.max_replicas)
        return Decision(self.desired, panicking)

    def _replicas_for(self, demand: float) -> int:
        return math.ceil(demand / self.bounds.target_in_flight)

    def _average(self, since: float) -> float:
        total = count = 0
        for bucket in reversed(self._buckets):
            if bucket.last < since:
                break
            total += bucket.total
            count += bucket.count
        return total / count if count else 0.0

    def _peak(self, since: float) -> int:
        peak = 0
        for bucket in reversed(self._buckets):
            if bucket.last < since:
                break
            peak = max(peak, bucket.peak)
        return peak
