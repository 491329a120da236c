"""WARM mode: a Deployment + Service per function, requests to ready pod endpoints.

The Service exists for its EndpointSlices: the scheduler watches them and
POSTs each request straight to a ready pod (least in-flight first, at most
`per_pod` at once per pod, one keep-alive pool per pod). It never sends to a
Service without ready endpoints — a request waits (within its deadline) for
one — and a pod that stops being ready gets no new requests. A request in
flight on a pod that dies fails to connect or is cut: CRASH, retried. The
retry must not go back to that pod before Kubernetes has had its say: the
address is set aside until its Service's slices change (the kubelet saw the
container die, or another pod took the address) or `QUARANTINE_S` passes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.execution import timeout as timeout_outcome
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind, crash
from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver, ReplicaCounts
from nanofaas_scheduler.dispatch.function_protocol import MISDIRECTED
from nanofaas_scheduler.dispatch.hop_client import HopClient, Target
from nanofaas_scheduler.dispatch.http_invoke import invoke
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.api import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    PODS,
    SERVICES,
    ApiError,
    KubeApi,
)
from nanofaas_scheduler.dispatch.kubernetes.metrics import KubeMetrics
from nanofaas_scheduler.dispatch.kubernetes.objects import (
    PORT,
    PodOptions,
    build_deployment,
    build_service,
    pod_concurrency,
)
from nanofaas_scheduler.dispatch.kubernetes.pods import (
    not_started,
    not_started_reason,
    warm_problem,
    with_last_words,
)
from nanofaas_scheduler.dispatch.kubernetes.warm_phases import WarmPhases
from nanofaas_scheduler.dispatch.kubernetes.warm_start import StuckPods
from nanofaas_scheduler.dispatch.kubernetes.watch import SYNC, Watcher
from nanofaas_scheduler.policies.autoscale import bounds_of

log = logging.getLogger(__name__)
# A pod address that does not accept a connection within this is dead (a lost node drops SYNs).
CONNECT_TIMEOUT_S = 5.0
# How long a pod whose connection failed gets no request, unless the slices change first.
QUARANTINE_S = 5.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(slots=True)
class Endpoint:
    ip: str
    uid: str = ""  # the pod behind the address (the slice's targetRef): requests name it
    in_flight: int = 0


@dataclass(slots=True)
class Pool:
    """The ready endpoints of one function (from its Service's slices) and their load."""

    function: str
    per_pod: int
    # Ready addresses by slice, each with its pod's uid.
    slices: dict[str, dict[str, str]] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # Set (and replaced by a fresh one) whenever an endpoint may have become free: see signal().
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Since when a dispatch has been waiting with no ready pod (scale from zero): the cold start.
    cold_since: float | None = None
    reported: int = -1  # the ready count last told to the observer
    # Pods that cannot serve, and why (pod watch): with no ready endpoint, requests fail fast.
    problems: dict[str, Outcome] = field(default_factory=dict)
    # Pods not Ready past the start bound (warm_start.py), and why: problems too.
    stuck: dict[str, Outcome] = field(default_factory=dict)
    # Pods seen Ready once: a later crash loop is a restart to wait for, not a start failure.
    served: set[str] = field(default_factory=set)
    # (address, pod uid) -> until when (loop time) it gets no request: its process said it is
    # another pod (a reused IP, our view lags: until the slices change), or its connection
    # failed (a pod that died, a lost node: until the slices change or QUARANTINE_S passed).
    quarantined: dict[tuple[str, str], float] = field(default_factory=dict)
    users: int = 0  # dispatches waiting for or using an endpoint
    removed: bool = False  # the function was deleted: its objects go once `users` is 0

    def signal(self) -> None:
        """Wake every waiter, at once: the current event is set and a fresh one takes its place.

        Synchronous, so a dispatch that ends frees its endpoint without a task or a lock
        (a Condition's notify_all needs both; this is on every warm invocation's path).
        """
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def ready_ips(self) -> dict[str, str]:
        """Ready address -> its pod's uid."""
        ready: dict[str, str] = {}
        for addresses in self.slices.values():
            ready.update(addresses)
        return ready

    def refresh(self) -> None:
        ready = self.ready_ips()
        for ip in list(self.endpoints):
            if ip not in ready and self.endpoints[ip].in_flight == 0:
                del self.endpoints[ip]
        for ip, uid in ready.items():
            self.endpoints.setdefault(ip, Endpoint(ip)).uid = uid
        for pair in [p for p in self.quarantined if ready.get(p[0]) != p[1]]:
            del self.quarantined[pair]

    def pick(self, now: float) -> Endpoint | None:
        ready = self.ready_ips()
        candidates = [
            e
            for ip, e in self.endpoints.items()
            if ip in ready and e.in_flight < self.per_pod and self.quarantined.get((ip, e.uid), 0.0) <= now
        ]
        return min(candidates, key=lambda e: (e.in_flight, e.ip)) if candidates else None


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class StartFailed(Exception):
    def __init__(self, outcome: Outcome, pod: str) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome
        self.pod = pod


class WarmFunctions:
    def __init__(
        self,
        api: KubeApi,
        options: PodOptions,
        track: Callable[[Awaitable[None]], None],
        *,
        watch_timeout_s: int = 60,
        metrics: KubeMetrics | None = None,
        start_after_s: float = 60.0,
        unschedulable_after_s: float = 30.0,
    ) -> None:
        self._api = api
        self._options = options
        self._namespace = options.namespace
        self._track = track
        self._watch_timeout_s = watch_timeout_s
        self._pools: dict[str, Pool] = {}  # by Service name
        # Ready addresses per Service and slice, kept for every WARM Service the watch sees, so a
        # pool made after the list (a function adopted from a previous scheduler) starts with them.
        self._slices: dict[str, dict[str, dict[str, str]]] = {}
        self._revisions: dict[str, int] = {}  # function -> spec revision applied
        self._watcher: Watcher | None = None
        self._pod_watcher: Watcher | None = None
        # Functions whose Deployment a previous scheduler left and nobody announced yet.
        self._unclaimed: set[str] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._observer = BackendObserver()
        self._stuck = StuckPods(start_after_s, unschedulable_after_s, self._on_stuck)
        self._phases: WarmPhases | None = None
        if metrics is not None:
            self._phases = WarmPhases(metrics.warm_phase, time.monotonic)
        # Per function, its WARM pods that exist and are not terminating (the current replicas);
        # kept for every function the watch sees, like _slices, so adopted ones count at once.
        self._pods: dict[str, set[str]] = {}
        self._desired: dict[str, int] = {}  # function -> replicas the autoscaler wants
        self._scaled: dict[str, int] = {}  # function -> replicas last written to the Deployment
        self._scaling: set[str] = set()  # functions with a /scale patch in flight
        self._closed = False

    def attach(self, observer: BackendObserver) -> None:
        self._observer = observer

    async def start(self) -> None:
        self._watcher = Watcher(
            self._api,
            ENDPOINT_SLICES,
            self._namespace,
            naming.selector(None, naming.COMPONENT_WARM),
            self._on_slice,
            watch_timeout_s=self._watch_timeout_s,
        )
        self._watcher.start()
        self._pod_watcher = Watcher(
            self._api,
            PODS,
            self._namespace,
            naming.selector(None, naming.COMPONENT_WARM),
            self._on_pod,
            watch_timeout_s=self._watch_timeout_s,
        )
        self._pod_watcher.start()

    def _pool_of_pod(self, pod: dict[str, Any]) -> Pool | None:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        name = annotations.get(naming.FUNCTION_ANNOTATION, "")
        return self._pools.get(naming.function_object_name(name)) if name else None

    def _on_pod(self, kind: str, obj: Any) -> None:
        if self._phases is not None:
            if kind == SYNC:
                self._phases.forget()
            else:
                self._phases.on_pod(kind, obj)
        if kind == SYNC:
            self._pods.clear()
            present = {str(pod["metadata"].get("name", "")) for pod in obj}
            self._stuck.retain(present)
            for known in self._pools.values():
                known.problems.clear()
                known.stuck = {name: why for name, why in known.stuck.items() if name in present}
        for pod in obj if kind == SYNC else [obj]:
            self._count_pod(kind, pod)
            pool = self._pool_of_pod(pod)
            if pool is None:
                continue
            name = str(pod["metadata"].get("name", ""))
            if kind == "DELETED" or _is_ready(pod) or pod["metadata"].get("deletionTimestamp"):
                self._stuck.forget(name)
                pool.stuck.pop(name, None)
            elif name not in pool.served and self._stuck.pending(name, pod):
                pool.stuck.pop(name, None)
            if kind == "DELETED":
                pool.served.discard(name)
            elif _is_ready(pod):
                pool.served.add(name)
            gone = kind == "DELETED" or name in pool.served
            problem = None if gone else (warm_problem(pod) or pool.stuck.get(name))
            if problem is None:
                pool.problems.pop(name, None)
            else:
                pool.problems[name] = problem
                self._notify(pool)

    def _count_pod(self, kind: str, pod: dict[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        function = (metadata.get("annotations") or {}).get(naming.FUNCTION_ANNOTATION, "")
        if not function:
            return
        pods = self._pods.setdefault(function, set())
        if kind == "DELETED" or metadata.get("deletionTimestamp"):
            pods.discard(str(metadata.get("name", "")))
            if not pods:
                del self._pods[function]
        else:
            pods.add(str(metadata.get("name", "")))

    def _on_stuck(self, name: str, bound: float, pod: dict[str, Any]) -> None:
        self._track(self._mark_stuck(name, bound, pod))

    async def _mark_stuck(self, name: str, bound: float, pod: dict[str, Any]) -> None:
        """Say why the pod is not ready (its status and events), then fail fast while none is."""
        uid = str(pod["metadata"].get("uid", ""))
        events = await self._api.pod_events(self._namespace, name, uid) if uid else []
        latest = self._stuck.last(name)
        pool = self._pool_of_pod(pod)
        if latest is None or pool is None:
            return  # became ready or went away meanwhile
        problem = not_started(name, bound, not_started_reason(latest, events))
        log.warning("a WARM pod is not ready", extra={"function": pool.function, "error": problem.message})
        pool.stuck[name] = pool.problems[name] = problem
        self._notify(pool)

    async def reconcile(self, grace_s: float) -> None:
        """Adopt the WARM objects of functions announced within `grace_s`; delete the others then."""
        try:
            listed = await self._api.list(
                DEPLOYMENTS, self._namespace, naming.selector(None, naming.COMPONENT_WARM)
            )
        except ApiError as exc:
            log.warning("could not list WARM Deployments to reconcile", extra={"error": str(exc)})
            return
        for item in listed.get("items") or ():
            name = (item["metadata"].get("annotations") or {}).get(naming.FUNCTION_ANNOTATION)
            if name and name not in self._revisions:
                self._unclaimed.add(name)
        if self._unclaimed:
            self._sweep = asyncio.get_running_loop().call_later(grace_s, self._delete_unclaimed)

    def _delete_unclaimed(self) -> None:
        for name in sorted(self._unclaimed):
            log.info("deleting the WARM objects of an unknown function", extra={"function": name})
            self._track(self.function_removed(name))
        self._unclaimed.clear()

    def _pool(self, spec: types_pb2.FunctionSpec) -> Pool:
        service = naming.function_object_name(spec.name)
        per_pod = pod_concurrency(spec)
        pool = self._pools.get(service)
        if pool is None or pool.removed:
            pool = self._pools[service] = Pool(
                spec.name, per_pod, slices=self._slices.setdefault(service, {})
            )
            pool.refresh()
        pool.per_pod = per_pod
        return pool

    def _on_slice(self, kind: str, obj: Any) -> None:
        if kind == SYNC:
            for slices in self._slices.values():
                slices.clear()  # in place: pools share these dicts
            for item in obj:
                self._apply_slice(item, deleted=False)
        else:
            self._apply_slice(obj, deleted=kind == "DELETED")
        for pool in self._pools.values():
            pool.refresh()
            self._notify(pool)

    def _apply_slice(self, item: dict[str, Any], *, deleted: bool) -> None:
        metadata = item.get("metadata") or {}
        service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
        if not service:
            return
        slices = self._slices.setdefault(service, {})
        name = metadata.get("name", "")
        if deleted:
            slices.pop(name, None)
            return
        ready: dict[str, str] = {}
        for endpoint in item.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") and not conditions.get("terminating"):
                uid = str((endpoint.get("targetRef") or {}).get("uid") or "")
                ready.update(dict.fromkeys(endpoint.get("addresses") or (), uid))
        slices[name] = ready

    def _notify(self, pool: Pool) -> None:
        pool.signal()
        ready = len(pool.ready_ips())
        if ready != pool.reported:
            pool.reported = ready
            self._observer.replicas_changed(pool.function, ready)

    async def ensure(self, spec: types_pb2.FunctionSpec) -> None:
        """Apply the Deployment and Service (server-side apply: create, or update in place)."""
        if self._revisions.get(spec.name) == spec.revision:
            return
        self._pool(spec)
        await self._api.apply(SERVICES, self._namespace, build_service(spec, self._options))
        replicas = self._desired.get(spec.name, bounds_of(spec).min_replicas)
        await self._api.apply(DEPLOYMENTS, self._namespace, build_deployment(spec, self._options, replicas))
        self._scaled[spec.name] = replicas
        self._revisions[spec.name] = spec.revision

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        """Patch the Deployment's /scale to `desired`, one patch per function at a time, latest wins."""
        self._desired[spec.name] = desired
        if self._closed:
            return
        if spec.name in self._revisions and spec.name not in self._scaling:
            self._scaling.add(spec.name)
            self._track(self._write_scale(spec.name))

    async def _write_scale(self, name: str) -> None:
        try:
            while name in self._revisions and (wanted := self._desired.get(name)) != self._scaled.get(name):
                assert wanted is not None
                try:
                    await self._api.scale(self._namespace, naming.function_object_name(name), wanted)
                except ApiError as exc:
                    log.warning("could not scale", extra={"function": name, "error": str(exc)})
                    return  # the next decision tries again
                self._scaled[name] = wanted
        finally:
            self._scaling.discard(name)

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        bounds = bounds_of(spec)
        pool = self._pools.get(naming.function_object_name(spec.name))
        desired = self._desired.get(spec.name, self._scaled.get(spec.name, 0))
        current = len(self._pods.get(spec.name, ()))
        ready = len(pool.ready_ips()) if pool is not None else 0
        return ReplicaCounts(current, ready, desired, bounds.min_replicas, bounds.max_replicas)

    async def dispatch(self, attempt: Attempt, client: HopClient) -> Outcome:
        pool = self._pool(attempt.spec)
        pool.users += 1
        try:
            return await self._dispatch(pool, attempt, client)
        finally:
            pool.users -= 1
            if pool.removed:
                pool.signal()  # _remove_when_idle waits for the last user; _dispatch signalled the rest

    async def _dispatch(self, pool: Pool, attempt: Attempt, client: HopClient) -> Outcome:
        deadline = asyncio.get_running_loop().time() + attempt.timeout  # waiting and the request share it
        try:
            async with asyncio.timeout_at(deadline):
                await self.ensure(attempt.spec)
                if pool.cold_since is None and not pool.ready_ips():
                    pool.cold_since = time.perf_counter()
                endpoint = await self._acquire(pool)
        except TimeoutError:
            return timeout_outcome(attempt.timeout_ms)
        except StartFailed as failed:
            return await with_last_words(self._api, self._namespace, failed.pod, failed.outcome)
        except ApiError as exc:
            return crash(f"cannot apply the function's Deployment: {exc}", codes.START_FAILED)
        if pool.cold_since is not None:
            self._observer.cold_start(attempt.function_name, time.perf_counter() - pool.cold_since)
            pool.cold_since = None
        pair = (endpoint.ip, endpoint.uid)
        try:
            async with asyncio.timeout_at(deadline):
                outcome = await invoke(
                    client,
                    Target(endpoint.ip, PORT),
                    attempt,
                    pod_uid=endpoint.uid,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    on_connection_failure=lambda: self._quarantine(pool, pair, QUARANTINE_S),
                )
            if outcome.kind is OutcomeKind.CRASH and outcome.message.startswith(MISDIRECTED):
                self._quarantine(pool, pair, math.inf)
            elif self._phases is not None and outcome.kind is not OutcomeKind.CRASH:
                self._phases.answered(endpoint.ip)
            return outcome
        except TimeoutError:
            return timeout_outcome(attempt.timeout_ms)
        finally:
            endpoint.in_flight -= 1
            pool.refresh()
            self._notify(pool)

    def _quarantine(self, pool: Pool, pair: tuple[str, str], seconds: float) -> None:
        """No request to that pod for `seconds` (or until the slices say something new of it)."""
        loop = asyncio.get_running_loop()
        pool.quarantined[pair] = loop.time() + seconds
        if seconds != math.inf:  # then waiting requests may use it again
            loop.call_later(seconds, self._notify, pool)

    async def _acquire(self, pool: Pool) -> Endpoint:
        loop = asyncio.get_running_loop()
        # No await between a pick and taking the endpoint: one loop, so no lock is needed.
        while (endpoint := pool.pick(loop.time())) is None:
            if pool.problems and not pool.ready_ips():
                pod, problem = next(iter(pool.problems.items()))
                raise StartFailed(problem, pod)
            await pool.changed.wait()
        endpoint.in_flight += 1
        return endpoint

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        adopted = spec.name in self._unclaimed
        self._unclaimed.discard(spec.name)
        if spec.execution_mode == types_pb2.EXECUTION_MODE_WARM:
            try:
                await self.ensure(spec)
            except ApiError as exc:
                log.warning(
                    "could not apply a WARM function", extra={"function": spec.name, "error": str(exc)}
                )
        elif adopted or spec.name in self._revisions:
            await self.function_removed(spec.name)

    async def function_removed(self, name: str) -> None:
        """Delete the Deployment and Service once in-flight requests end (they finish, as promised)."""
        self._unclaimed.discard(name)
        self._revisions.pop(name, None)
        self._desired.pop(name, None)
        self._scaled.pop(name, None)
        service = naming.function_object_name(name)
        pool = self._pools.get(service)
        if pool is not None:
            pool.removed = True
            if pool.users:
                self._track(self._remove_when_idle(pool, name))
                return
            del self._pools[service]
        await self._delete_objects(name)

    async def _remove_when_idle(self, pool: Pool, name: str) -> None:
        while pool.users:
            await pool.changed.wait()
        service = naming.function_object_name(name)
        if self._pools.get(service) is not pool:
            return  # registered again meanwhile: its objects are the new function's
        del self._pools[service]
        await self._delete_objects(name)

    async def _delete_objects(self, name: str) -> None:
        service = naming.function_object_name(name)
        for resource in (DEPLOYMENTS, SERVICES):
            try:
                await self._api.delete(resource, self._namespace, service)
            except ApiError as exc:
                log.warning(
                    "could not delete", extra={"function": name, "object": service, "error": str(exc)}
                )

    async def close(self) -> None:
        """Stop watching; the Deployments stay (a restarted scheduler adopts them)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        self._stuck.close()
        for watcher in (self._watcher, self._pod_watcher):
            if watcher is not None:
                watcher.stop()
