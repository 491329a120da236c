"""The Kubernetes backend: one Job per JOB attempt, a Deployment + Service per WARM function.

JOB results return in-band: the Job's pod runs the runtime (or the watchdog
around a STDIO/FILE command) in single-use mode, serving the function HTTP
protocol; once the pod watch says it is Ready, the attempt is POSTed to the
pod IP exactly as WARM invocations are. The same watch is the failure
detector (pods.py), so no attempt waits for its timeout because a pod died.
The scheduler deletes every Job it created when the attempt ends (whichever
way); ttlSecondsAfterFinished is the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.config import ConfigError
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.execution import timeout as timeout_outcome
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind, crash, function_error
from nanofaas_scheduler.dispatch.base import NO_REPLICAS, Attempt, BackendObserver, Dispatcher, ReplicaCounts
from nanofaas_scheduler.dispatch.function_protocol import MISDIRECTED
from nanofaas_scheduler.dispatch.hop_client import HopClient, Target
from nanofaas_scheduler.dispatch.http_invoke import invoke
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.api import JOBS, PODS, ApiError, KubeApi
from nanofaas_scheduler.dispatch.kubernetes.logs import PodLogs
from nanofaas_scheduler.dispatch.kubernetes.metrics import KubeMetrics
from nanofaas_scheduler.dispatch.kubernetes.objects import PORT, PodOptions, UnrunnableFunction, build_job
from nanofaas_scheduler.dispatch.kubernetes.pods import (
    AttemptPod,
    PodTracker,
    not_started,
    not_started_reason,
    with_last_words,
)
from nanofaas_scheduler.dispatch.kubernetes.preflight import check_template_on_cluster
from nanofaas_scheduler.dispatch.kubernetes.template import TemplateError
from nanofaas_scheduler.dispatch.kubernetes.warm import CONNECT_TIMEOUT_S, WarmFunctions
from nanofaas_scheduler.dispatch.kubernetes.watch import Watcher
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery

log = logging.getLogger(__name__)

# When the POST to a pod fails, how long the watch gets to say why (OOMKilled beats "connection reset").
_CAUSE_GRACE_S = 2.0
_CLOSE_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class KubeOptions:
    pod: PodOptions
    unschedulable_after_s: float = 30.0
    # A pod not Ready this long after its Job was created (WARM: after the watch first saw it)
    # has failed to start (a Secret volume that cannot be mounted, a probe that never passes...).
    start_after_s: float = 60.0
    watch_timeout_s: int = 60
    # After start, how long registered functions have to be announced before the WARM
    # objects of functions nobody announced are deleted (the registry's first sync).
    adopt_grace_s: float = 30.0
    # Where the pod template came from (NANOFAAS_K8S_POD_TEMPLATE), for messages; "" = none.
    template_path: str = ""


class KubernetesBackend(Dispatcher):
    def __init__(self, api: KubeApi, options: KubeOptions, metrics: KubeMetrics | None = None) -> None:
        self._api = api
        self._metrics = metrics
        self._options = options
        self._namespace = options.pod.namespace
        self._pods = PodTracker(options.unschedulable_after_s)
        self._client: HopClient | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._watchers: list[Watcher] = []
        self._warm = WarmFunctions(
            api,
            options.pod,
            self._track,
            watch_timeout_s=options.watch_timeout_s,
            metrics=metrics,
            start_after_s=options.start_after_s,
            unschedulable_after_s=options.unschedulable_after_s,
        )
        self._starting: asyncio.Future[None] | None = None
        self._logs = PodLogs(api, self._namespace, watch_timeout_s=options.watch_timeout_s)

    @property
    def client(self) -> HopClient:
        if self._client is None:
            self._client = HopClient()
        return self._client

    async def start(self) -> None:
        """Start once; every caller (dispatch, function_changed) waits until it is done.

        Waiting matters: the start-up clean-up deletes every Job of ours, which must not
        catch a Job that an attempt made meanwhile.
        """
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        """Start the watches and remove the Jobs a previous scheduler left (their executions are gone)."""
        pods = Watcher(
            self._api,
            PODS,
            self._namespace,
            naming.selector(None, naming.COMPONENT_JOB),
            self._pods.on_event,
            watch_timeout_s=self._options.watch_timeout_s,
        )
        pods.start()
        self._watchers.append(pods)
        await self._warm.start()
        await self._warm.reconcile(self._options.adopt_grace_s)
        try:
            await self._api.delete_collection(
                JOBS, self._namespace, naming.selector(None, naming.COMPONENT_JOB)
            )
        except ApiError as exc:
            log.warning("could not delete leftover Jobs", extra={"error": str(exc)})

    async def check(self) -> None:
        """The cluster judges the pod template (a dry-run create): a refused one stops the scheduler."""
        if not self._options.template_path:
            return
        try:
            await check_template_on_cluster(self._api, self._options.pod)
        except TemplateError as exc:
            raise ConfigError(f"NANOFAAS_K8S_POD_TEMPLATE: {self._options.template_path}: {exc}") from exc

    def attach(self, observer: BackendObserver) -> None:
        super().attach(observer)
        self._warm.attach(observer)

    async def dispatch(self, attempt: Attempt) -> Outcome:
        await self.start()
        try:
            if attempt.spec.execution_mode == types_pb2.EXECUTION_MODE_WARM:
                return await self._warm.dispatch(attempt, self.client)
            return await self._job(attempt)
        except UnrunnableFunction as exc:
            return function_error(str(exc), codes.UNRUNNABLE_FUNCTION)

    async def _job(self, attempt: Attempt) -> Outcome:
        job = build_job(attempt, self._options.pod)
        name = job["metadata"]["name"]
        pod = self._pods.expect(attempt.execution_id, attempt.number)
        started = time.perf_counter()
        pod.phases["created"] = asyncio.get_running_loop().time()
        # Its own task: a create still in flight when the attempt ends (a hung API) is
        # waited for in the background, so a Job it creates late is deleted all the same.
        create = asyncio.ensure_future(self._api.create(JOBS, self._namespace, job))
        try:
            async with asyncio.timeout(attempt.timeout):
                try:
                    await asyncio.shield(create)
                except ApiError as exc:
                    if exc.status != 409:  # 409: a retried create that had succeeded
                        return crash(f"cannot create Job {name}: {exc}", codes.START_FAILED)
                return await self._run_on_pod(attempt, pod, started)
        except TimeoutError:
            return timeout_outcome(attempt.timeout_ms)
        finally:
            self._record_phases(pod)
            self._pods.forget(attempt.execution_id, attempt.number)
            self._track(self._delete_job(name, create, attempt, pod.name))

    def _record_phases(self, pod: AttemptPod) -> None:
        if self._metrics is None:
            return
        created = pod.phases.pop("created")
        self._metrics.job_phases({phase: at - created for phase, at in pod.phases.items()})

    async def _run_on_pod(self, attempt: Attempt, pod: AttemptPod, started: float) -> Outcome:
        bound = self._options.start_after_s
        try:
            ended = await asyncio.wait_for(
                pod.wait_ready(), max(0.0, bound - (time.perf_counter() - started))
            )
        except TimeoutError:
            events = await self._api.pod_events(self._namespace, pod.name, pod.uid) if pod.uid else []
            return not_started(pod.name, bound, not_started_reason(pod.last, events))
        if ended is not None:
            return await with_last_words(self._api, self._namespace, pod.name, ended)
        self.observer.cold_start(attempt.function_name, time.perf_counter() - started)
        request = asyncio.ensure_future(
            invoke(
                self.client,
                Target(pod.ready.result(), PORT),
                attempt,
                keep_alive=False,
                pod_uid=pod.uid,
                connect_timeout=CONNECT_TIMEOUT_S,
            )
        )
        try:
            await asyncio.wait({request, pod.ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not request.done():
                request.cancel()
        if request.done() and not request.cancelled():
            outcome = request.result()
            pod.phases["first_result"] = asyncio.get_running_loop().time()
            if outcome.kind is OutcomeKind.CRASH and not outcome.message.startswith(MISDIRECTED):
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(pod.ended), _CAUSE_GRACE_S)
            return outcome
        return pod.ended.result()

    async def _delete_job(self, name: str, create: Awaitable[object], attempt: Attempt, pod: str) -> None:
        try:
            await create
        except ApiError as exc:
            if exc.status != 409:
                return  # never created
        # Its pod's lines outlive it (served by logs()); read them before the Job goes.
        await self._logs.keep(attempt.function_name, attempt.execution_id, pod)
        try:
            await self._api.delete(JOBS, self._namespace, name)
        except ApiError as exc:
            log.warning("could not delete Job", extra={"job": name, "error": str(exc)})

    def _track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        self._warm.scale(spec, desired)

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        if spec.execution_mode != types_pb2.EXECUTION_MODE_WARM:
            return NO_REPLICAS
        return self._warm.replicas(spec)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        await self.start()
        await self._warm.function_changed(spec)

    async def function_removed(self, name: str) -> None:
        """WARM objects go once in-flight requests end; running JOB attempts delete their own Job."""
        self._logs.forget(name)
        await self._warm.function_removed(name)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        """The function's pods' log lines (logs.py); may raise TooManyFollowers."""
        return self._logs.stream(query)

    async def close(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        await self._warm.close()
        if self._background:  # clean-up (Job deletions) gets a bounded time, then is dropped
            _, pending = await asyncio.wait(self._background, timeout=_CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
        self._logs.close()
        if self._client is not None:
            await self._client.close()
        self._api.close()
