"""The scaling policy, driven by a clock moved in whole units (no wall clock, no sleeps)."""

from __future__ import annotations

import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.policies.autoscale import ScalingBounds, ScalingPolicy, Windows, bounds_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


WINDOWS = Windows(stable_s=60.0, panic_s=6.0, panic_threshold=2.0)


def policy(
    clock: Clock, *, minimum: int = 1, maximum: int = 10, target: int = 1, delay_s: float = 30.0
) -> ScalingPolicy:
    return ScalingPolicy(ScalingBounds(minimum, maximum, target, delay_s), WINDOWS, clock)


def step(scaling: ScalingPolicy, clock: Clock, demand: int, ready: int, seconds: float = 1.0) -> int:
    """One tick: time passes, one demand sample, one decision."""
    clock.now += seconds
    scaling.observe(demand)
    return scaling.decide(ready).desired


def test_a_burst_panics_up_to_the_peak_at_once_clamped_to_max() -> None:
    clock = Clock()
    scaling = policy(clock, maximum=8)
    for _ in range(10):
        assert step(scaling, clock, 0, 1) == 1
    scaling.observe(12)  # same instant: the admissions of a burst
    decision = scaling.decide(ready=1)
    assert decision.panicking
    assert decision.desired == 8  # ceil(12 / 1), clamped to maxReplicas


def test_from_zero_replicas_any_demand_panics_to_one_replica_at_once() -> None:
    clock = Clock()
    scaling = policy(clock, minimum=0)
    assert step(scaling, clock, 0, 0) == 0
    scaling.observe(1)
    decision = scaling.decide(ready=0)
    assert (decision.desired, decision.panicking) == (1, True)


def test_never_scales_down_while_panicking() -> None:
    clock = Clock()
    scaling = policy(clock, delay_s=0.0)
    step(scaling, clock, 0, 1)
    assert step(scaling, clock, 6, 1) == 6  # panic: 6 >= 2 x 1 ready
    # Demand drops at once; the panic window (6 s) has not passed without a trigger.
    for _ in range(4):
        assert step(scaling, clock, 0, 1) == 6
    # Still rising in panic: follows the new peak up.
    assert step(scaling, clock, 9, 6) == 9


def test_steady_demand_holds_steady_replicas_without_panic() -> None:
    clock = Clock()
    scaling = policy(clock, target=2)
    decisions = []
    for _ in range(120):
        clock.now += 1
        scaling.observe(6)
        decisions.append(scaling.decide(ready=3))
    assert {d.desired for d in decisions[-60:]} == {3}  # ceil(6 / targetInFlight 2)
    assert not any(d.panicking for d in decisions[-60:])


def test_a_modest_rise_follows_the_stable_average() -> None:
    clock = Clock()
    scaling = policy(clock, delay_s=0.0)
    for _ in range(60):
        step(scaling, clock, 4, 4)
    # 5 < 2 x 4 ready: no panic; the stable average climbs over the window.
    seen = [step(scaling, clock, 5, 4) for _ in range(60)]
    assert seen[0] == 5  # ceil(average just above 4)
    assert seen[-1] == 5
    assert all(desired in (4, 5) for desired in seen)


def test_decay_waits_for_the_scale_down_delay_then_goes_to_min() -> None:
    clock = Clock()
    scaling = policy(clock, minimum=1, delay_s=30.0)
    for _ in range(70):
        step(scaling, clock, 4, 4)
    assert scaling.desired == 4
    history = [step(scaling, clock, 0, 4) for _ in range(200)]
    # The stable average falls over its 60 s window; each lower figure waits 30 s more.
    first_drop = next(i for i, desired in enumerate(history) if desired < 4)
    assert first_drop >= 30
    assert history == sorted(history, reverse=True)  # monotone decay, no bounce
    assert history[-1] == 1  # minReplicas


def test_scale_to_zero_only_when_min_is_zero() -> None:
    clock = Clock()
    zero, one = policy(clock, minimum=0, delay_s=5.0), policy(clock, minimum=1, delay_s=5.0)
    for scaling in (zero, one):
        scaling.observe(3)
        scaling.decide(ready=0)
    for _ in range(100):
        clock.now += 1
        for scaling in (zero, one):
            scaling.observe(0)
            scaling.decide(ready=1)
    assert (zero.desired, one.desired) == (0, 1)


def test_oscillating_demand_does_not_flap() -> None:
    clock = Clock()
    scaling = policy(clock, delay_s=30.0)
    for _ in range(60):
        step(scaling, clock, 4, 4)
    history: list[int] = []
    for tick in range(240):  # 5 s busy, 5 s idle, over and over
        history.append(step(scaling, clock, 4 if tick % 10 < 5 else 0, scaling.desired))
    assert history == sorted(history, reverse=True)  # it may settle lower, it never bounces
    assert len(set(history)) <= 2
    assert set(history[-120:]) == {history[-1]}  # then holds
    assert history[-1] >= 2  # enough for the average demand of 2


def test_bounds_apply_the_registry_defaults_and_the_backend_capacity() -> None:
    spec = types_pb2.FunctionSpec(name="f", concurrency=6)
    assert bounds_of(spec) == ScalingBounds(1, 6, 1, 60.0)
    spec.min_replicas, spec.max_replicas, spec.target_in_flight, spec.scale_down_delay_ms = 0, 3, 4, 250
    assert bounds_of(spec) == ScalingBounds(0, 3, 4, 0.25)
    assert bounds_of(spec, replica_capacity=1).target_in_flight == 1


@pytest.mark.parametrize("target", [1, 3])
def test_desired_is_ceil_of_demand_over_target(target: int) -> None:
    clock = Clock()
    scaling = policy(clock, target=target, maximum=100, delay_s=0.0)
    for _ in range(61):
        step(scaling, clock, 10, 100)
    assert scaling.desired == -(-10 // target)


def test_work_and_memory_stay_bounded_however_often_it_is_fed() -> None:
    clock = Clock()
    scaling = policy(clock, maximum=100, delay_s=60.0)
    for index in range(200_000):  # 2,000 samples and decisions per second for 100 s
        clock.now += 0.0005
        scaling.observe(index % 50)
        scaling.decide(ready=50)
    assert len(scaling._buckets) <= 1001
    assert len(scaling._recommendations) <= 50
    assert scaling.desired == 25  # ceil(average 24.5): 49 at peak is under twice the 50 ready, no panic
