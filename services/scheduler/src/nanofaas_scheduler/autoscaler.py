"""The scaler loop: feeds each WARM function's demand to its policy and applies the decision.

Demand (queued + in flight) is sampled every tick, and at an admission that
takes it past what the current replicas are sized for, so a burst, or an
invocation meeting zero replicas, is acted on at once rather than at the next
tick; a decision goes to the backend through Dispatcher.scale(), which starts
or stops replicas without blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Execution
from nanofaas_scheduler.core.scheduler import Scheduler
from nanofaas_scheduler.dispatch.base import Dispatcher, ReplicaCounts
from nanofaas_scheduler.policies.autoscale import ScalingPolicy, Windows, bounds_of

log = logging.getLogger(__name__)


class Autoscaler:
    """One policy per WARM function with a lane, sampled each tick and at each admission."""

    def __init__(
        self,
        scheduler: Scheduler,
        dispatcher: Dispatcher,
        windows: Windows,
        *,
        tick_s: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._dispatcher = dispatcher
        self._windows = windows
        self._tick_s = tick_s
        self._clock = clock or asyncio.get_running_loop().time
        # function -> (spec revision the policy was built for, policy)
        self._policies: dict[str, tuple[int, ScalingPolicy]] = {}

    def admitted(self, execution: Execution) -> None:
        """An admission listener: demand beyond the replicas' capacity is acted on now.

        That is a burst, or an invocation meeting zero replicas. Demand the current
        replicas are sized for waits for the next tick, so a steady stream of
        admissions costs one dictionary look-up each.
        """
        demand = self._scheduler.demand_of(execution.function_name)
        if demand is None:
            return
        spec, queued, in_flight = demand
        known = self._policies.get(spec.name)
        if known is not None and known[0] == spec.revision:
            policy = known[1]
            if queued + in_flight <= policy.desired * policy.bounds.target_in_flight:
                return
        self._evaluate(spec, queued + in_flight)

    def tick(self) -> None:
        for spec, queued, in_flight in self._scheduler.demand():
            self._evaluate(spec, queued + in_flight)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.tick()
            except Exception:
                log.exception("autoscaler tick failed")

    def _evaluate(self, spec: types_pb2.FunctionSpec, demand: int) -> None:
        if spec.execution_mode != types_pb2.EXECUTION_MODE_WARM:
            return
        policy = self._policy(spec)
        policy.observe(demand)
        decision = policy.decide(self._dispatcher.replicas(spec).ready)
        self._dispatcher.scale(spec, decision.desired)

    def _policy(self, spec: types_pb2.FunctionSpec) -> ScalingPolicy:
        known = self._policies.get(spec.name)
        if known is not None and known[0] == spec.revision:
            return known[1]
        bounds = bounds_of(spec, self._dispatcher.replica_capacity(spec))
        if known is not None:  # a new revision keeps the demand seen so far
            known[1].bounds = bounds
            policy = known[1]
        else:
            policy = ScalingPolicy(bounds, self._windows, self._clock)
        self._policies[spec.name] = (spec.revision, policy)
        return policy

    def forget(self, name: str) -> None:
        self._policies.pop(name, None)

    def replicas(self) -> Iterable[tuple[str, ReplicaCounts]]:
        """Every WARM function's replicas as its backend reports them (the replica gauges)."""
        return [
            (spec.name, self._dispatcher.replicas(spec))
            for spec, _, _ in self._scheduler.demand()
            if spec.execution_mode == types_pb2.EXECUTION_MODE_WARM
        ]
