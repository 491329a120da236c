"""The failure detector of JOB attempts: what a pod's status says about its attempt.

`judge` is pure (golden-tested): a ready pod can take the attempt; an image
that cannot be pulled or a container that cannot be created ends it at once as
START_FAILED (not retried: a missing image does not appear by retrying); a
container that was OOM-killed, signalled or exited, an evicted or lost pod, or
a pod deleted under us ends it as CRASH (retried). `PodTracker` applies it to
the pod watch's events, one slot per running attempt.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Any

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind, crash, function_error
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.api import KubeApi
from nanofaas_scheduler.dispatch.kubernetes.template import FUNCTION_CONTAINER
from nanofaas_scheduler.dispatch.kubernetes.watch import SYNC

START_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True, slots=True)
class Verdict:
    ready_ip: str = ""
    ended: Outcome | None = None
    unschedulable: str = ""


def _describe_exit(code: int) -> str:
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            pass
    return f"exited with code {code}"


def judge(pod: dict[str, Any]) -> Verdict:
    status = pod.get("status") or {}
    images = {c.get("name"): c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or ()}
    for container in [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in START_FAILURES:
            image = container.get("image") or images.get(container.get("name"), "")
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return Verdict(
                ended=function_error(f"{waiting['reason']}: image {image!r}{detail}", codes.START_FAILED)
            )
        terminated = state.get("terminated")
        if terminated is not None:
            if terminated.get("reason") == "OOMKilled":
                return Verdict(ended=crash("OOMKilled: the function exceeded its memory limit"))
            how = _describe_exit(int(terminated.get("exitCode", 0)))
            detail = f": {terminated['message']}" if terminated.get("message") else ""
            return Verdict(ended=crash(f"function container {how}{detail}"))
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        reason = status.get("reason") or phase
        message = f": {status['message']}" if status.get("message") else ""
        return Verdict(ended=crash(f"pod {reason}{message}"))
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return Verdict(ended=crash("pod is being deleted (evicted, preempted or deleted by someone)"))
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    ready = conditions.get("Ready") or {}
    if ready.get("status") == "True" and status.get("podIP"):
        return Verdict(ready_ip=str(status["podIP"]))
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return Verdict(unschedulable=str(scheduled.get("message") or "no node fits the pod"))
    return Verdict()


_MAX_REASON = 1000


def not_started_reason(pod: dict[str, Any] | None, events: list[dict[str, Any]]) -> str:
    """Why a pod is not Ready yet, from its status and its Warning events (most recent first).

    E.g. `container function waiting: ContainerCreating; FailedMount: MountVolume.SetUp failed
    for volume "nanofaas-secret-0" : secret "db" not found`.
    """
    if pod is None:
        return "no pod was created (a quota, a LimitRange or an admission webhook may refuse it)"
    status = pod.get("status") or {}
    parts: list[str] = []
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        parts.append(
            f"{scheduled.get('reason') or 'not scheduled'}: {scheduled.get('message') or ''}".rstrip(": ")
        )
    elif not (pod.get("spec") or {}).get("nodeName"):
        parts.append("not scheduled yet")
    for container in [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]:
        state = container.get("state") or {}
        if waiting := state.get("waiting"):
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            parts.append(f"container {container.get('name')} waiting: {waiting.get('reason')}{detail}")
        elif "running" in state and not container.get("ready"):
            parts.append(
                f"container {container.get('name')} running but not ready (its readiness probe fails)"
            )
    warnings = [e for e in events if e.get("type") == "Warning"]
    warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
    seen: set[str] = set()
    for event in warnings:
        text = f"{event.get('reason')}: {event.get('message') or ''}".rstrip(": ")
        if text not in seen:
            seen.add(text)
            parts.append(text)
    reason = "; ".join(parts) or f"pod {status.get('phase') or 'Pending'}"
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


def not_started(name: str, after_s: float, reason: str) -> Outcome:
    """A pod that did not become Ready within the start bound: START_FAILED, not retried."""
    return function_error(
        f"pod {name or '(none)'} not ready after {after_s:g}s: {reason}", codes.START_FAILED
    )


def warm_problem(pod: dict[str, Any]) -> Outcome | None:
    """Why a WARM pod cannot serve (image, configuration, a crash loop), or None."""
    ended = judge(pod).ended
    if ended is not None and ended.kind is OutcomeKind.FUNCTION_ERROR:
        return ended
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (container.get("state") or {}).get("waiting") or {}
        last = (container.get("lastState") or {}).get("terminated")
        if waiting.get("reason") == "CrashLoopBackOff" and last is not None:
            how = _describe_exit(int(last.get("exitCode", 0)))
            return crash(
                f"function container {how} before becoming ready (CrashLoopBackOff)", codes.START_FAILED
            )
    return None


async def with_last_words(api: KubeApi, namespace: str, pod: str, outcome: Outcome) -> Outcome:
    """A start failure's message gets the container's last log lines (e.g. the handler's import error).

    The previous run's when there is one (a WARM pod's crash loop), else the current one's.
    """
    if outcome.error_code != codes.START_FAILED or outcome.kind is not OutcomeKind.CRASH or not pod:
        return outcome
    tail = await api.log_tail(namespace, pod, FUNCTION_CONTAINER, previous=True)
    return crash(f"{outcome.message}: {tail}", codes.START_FAILED) if tail else outcome


def attempt_key(labels: dict[str, str]) -> tuple[str, str] | None:
    execution, number = labels.get(naming.EXECUTION_LABEL), labels.get(naming.ATTEMPT_LABEL)
    return (execution, number) if execution and number else None


class AttemptPod:
    """What the watch learnt about one attempt's pod: when it is ready, or how the attempt ended."""

    def __init__(self, unschedulable_after_s: float) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[str] = loop.create_future()
        self.ended: asyncio.Future[Outcome] = loop.create_future()
        self.seen = False
        self.name = ""
        self.uid = ""  # the pod's uid: the POST names it, so a process that is not this pod refuses
        self.last: dict[str, Any] | None = None  # the pod as last seen, to say why it is not ready
        self.phases: dict[str, float] = {}
        self._unschedulable_after_s = unschedulable_after_s
        self._unschedulable: asyncio.TimerHandle | None = None

    async def wait_ready(self) -> Outcome | None:
        """None once the pod is ready (its IP in `ready`), else the outcome that ended the attempt."""
        waiting: set[asyncio.Future[Any]] = {self.ready, self.ended}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        return self.ended.result() if self.ended.done() else None

    def update(self, pod: dict[str, Any] | None) -> None:
        loop = asyncio.get_running_loop()
        if pod is None:
            if self.seen:
                self._end(crash("pod deleted before the attempt ended"))
            return
        self.seen = True
        self.last = pod
        self.name = str((pod.get("metadata") or {}).get("name", ""))
        self.uid = str((pod.get("metadata") or {}).get("uid", ""))
        status = pod.get("status") or {}
        if (pod.get("spec") or {}).get("nodeName"):
            self.phases.setdefault("scheduled", loop.time())
        if status.get("phase") == "Running":
            self.phases.setdefault("running", loop.time())
        verdict = judge(pod)
        if verdict.ended is not None:
            ended = verdict.ended
            if ended.kind is OutcomeKind.CRASH and not self.ready.done():
                # Died before it ever served: a start failure (retried), as on the local backend.
                ended = crash(ended.message, codes.START_FAILED)
            self._end(ended)
        elif verdict.ready_ip:
            self._cancel_timer()
            self.phases.setdefault("ready", loop.time())
            if not self.ready.done():
                self.ready.set_result(verdict.ready_ip)
        elif verdict.unschedulable:
            if self._unschedulable is None:
                message = verdict.unschedulable
                self._unschedulable = loop.call_later(
                    self._unschedulable_after_s,
                    self._end,
                    function_error(
                        f"Unschedulable for {self._unschedulable_after_s:g}s: {message}", codes.START_FAILED
                    ),
                )
        else:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._unschedulable is not None:
            self._unschedulable.cancel()
            self._unschedulable = None

    def _end(self, outcome: Outcome) -> None:
        self._cancel_timer()
        if not self.ended.done():
            self.ended.set_result(outcome)

    def close(self) -> None:
        self._cancel_timer()
        for future in (self.ready, self.ended):
            if not future.done():
                future.cancel()


class PodTracker:
    """Routes the JOB pod watch's events to the attempts waiting on them."""

    def __init__(self, unschedulable_after_s: float) -> None:
        self._attempts: dict[tuple[str, str], AttemptPod] = {}
        self._unschedulable_after_s = unschedulable_after_s

    def expect(self, execution_id: str, number: int) -> AttemptPod:
        slot = AttemptPod(self._unschedulable_after_s)
        self._attempts[(naming.label_value(execution_id), str(number))] = slot
        return slot

    def forget(self, execution_id: str, number: int) -> None:
        slot = self._attempts.pop((naming.label_value(execution_id), str(number)), None)
        if slot is not None:
            slot.close()

    def on_event(self, kind: str, obj: Any) -> None:
        if kind == SYNC:
            present = set()
            for pod in obj:
                key = attempt_key((pod.get("metadata") or {}).get("labels") or {})
                if key is not None:
                    present.add(key)
                    self._route(key, pod)
            for key, slot in list(self._attempts.items()):
                if key not in present:
                    slot.update(None)  # vanished while the watch was down
            return
        key = attempt_key((obj.get("metadata") or {}).get("labels") or {})
        if key is not None:
            self._route(key, None if kind == "DELETED" else obj)

    def _route(self, key: tuple[str, str], pod: dict[str, Any] | None) -> None:
        slot = self._attempts.get(key)
        if slot is not None:
            slot.update(pod)
