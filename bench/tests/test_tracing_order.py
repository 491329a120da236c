"""Scenario h's order: every case starts a repeat in turn, so drift does not weigh on one."""

from __future__ import annotations

from bench.scenarios.tracing import CASES, rotation


def test_each_case_goes_first_once_per_three_repeats() -> None:
    orders = [rotation(repeat) for repeat in range(3)]
    assert orders == [("off", "on", "sampled"), ("on", "sampled", "off"), ("sampled", "off", "on")]
    assert {order[0] for order in orders} == set(CASES)
    assert all(sorted(order) == sorted(CASES) for order in orders)


def test_the_rotation_repeats_and_follows_the_cases_given() -> None:
    assert rotation(3) == rotation(0)
    assert rotation(1, ("a", "b")) == ("b", "a")
