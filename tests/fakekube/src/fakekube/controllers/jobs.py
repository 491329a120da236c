"""The Job controller: pods from the template until enough succeed, or the Job fails.

Follows batch/v1 semantics: ``completions``/``parallelism``, ``backoffLimit`` (failed pods, plus
container restarts under ``restartPolicy: OnFailure``), ``activeDeadlineSeconds``
(reason DeadlineExceeded), ``suspend``, ``ttlSecondsAfterFinished``, and the 1.31+ condition
sequence: ``FailureTarget`` then ``Failed`` (once no pod is left running), ``SuccessCriteriaMet``
then ``Complete``. A pod deleted before it finished counts as failed, as with Job tracking
finalizers. Re-creation after a failure backs off exponentially (shortened, see ``Timing``).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable
from typing import Any

from .. import meta as m
from ..conditions import get_condition, is_true, set_condition
from ..config import Timing
from ..resources import JOB_KEY, POD_KEY
from ..selectors import selector_from_object
from ..store import Event, Store
from .base import Controller, Key, owner_keys

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def _finished(status: dict[str, Any]) -> str | None:
    for kind in ("Complete", "Failed"):
        if is_true(status, kind):
            return kind
    return None


class JobController(Controller):
    name = "job-controller"

    def __init__(self, store: Store, timing: Timing) -> None:
        super().__init__(store)
        self.timing = timing
        # Per Job uid: pods already counted, and pods deleted before they finished.
        self._counted: dict[str, set[str]] = {}
        self._lost: dict[str, set[str]] = {}
        self._last_failure: dict[str, datetime.datetime] = {}

    def keys_for(self, event: Event) -> Iterable[Key]:
        if event.resource.key == JOB_KEY:
            yield (event.obj["metadata"].get("namespace", ""), event.obj["metadata"]["name"])
        elif event.resource.key == POD_KEY:
            if event.type == "DELETED":
                ref = m.controller_of(event.obj)
                phase = (event.obj.get("status") or {}).get("phase")
                if ref is not None and ref.get("kind") == "Job" and phase not in ("Succeeded", "Failed"):
                    self._lost.setdefault(str(ref["uid"]), set()).add(event.obj["metadata"]["uid"])
            yield from owner_keys(event, "Job")

    def reconcile(self, key: Key) -> None:
        jobs = self.resource(JOB_KEY)
        job = self.store.peek(jobs, key[0], key[1])
        if job is None or m.is_terminating(job):
            return
        uid, spec = job["metadata"]["uid"], job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        pods = self._pods(job)
        if _finished(status):
            self._expire(job, status)
            return
        counted = self._counted.setdefault(uid, set())
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            pod_uid = pod["metadata"]["uid"]
            if phase in ("Succeeded", "Failed") and pod_uid not in counted:
                counted.add(pod_uid)
                field = "succeeded" if phase == "Succeeded" else "failed"
                status[field] = status.get(field, 0) + 1
                if phase == "Failed":
                    self._last_failure[uid] = m.now()
        for pod_uid in self._lost.pop(uid, set()) - counted:
            counted.add(pod_uid)
            status["failed"] = status.get("failed", 0) + 1
            self._last_failure[uid] = m.now()
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not m.is_terminating(p)
        ]
        terminating = [
            p
            for p in pods
            if m.is_terminating(p) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if spec.get("suspend"):
            self._delete(active)
            set_condition(
                status, "Suspended", "True", "JobSuspended", "Job suspended", times=("lastProbeTime",)
            )
            status.pop("startTime", None)
            self._write(job, status, [], terminating)
            return
        if is_true(status, "Suspended"):
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", times=("lastProbeTime",))
        status.setdefault("startTime", m.timestamp())
        failure = self._failure(spec, status, active)
        if failure is not None and get_condition(status, "FailureTarget") is None:
            set_condition(status, "FailureTarget", "True", *failure, times=("lastProbeTime",))
        target = get_condition(status, "FailureTarget")
        if target is not None:
            self._delete(active)
            if not active and not terminating:
                set_condition(
                    status,
                    "Failed",
                    "True",
                    target.get("reason"),
                    target.get("message"),
                    times=("lastProbeTime",),
                )
            self._write(job, status, [], terminating)
            if is_true(status, "Failed"):
                self._expire(job, status)
            return
        completions = spec.get("completions")
        succeeded = status.get("succeeded", 0)
        done = succeeded >= completions if completions is not None else succeeded > 0 and not active
        if done:
            self._delete(active)
            set_condition(
                status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                times=("lastProbeTime",),
            )
            if not active and not terminating:
                set_condition(
                    status,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    times=("lastProbeTime",),
                )
                status["completionTime"] = m.timestamp()
            self._write(job, status, [], terminating)
            if is_true(status, "Complete"):
                self._expire(job, status)
            return
        remaining = (completions - succeeded) if completions is not None else spec.get("parallelism", 1)
        want = min(int(spec.get("parallelism", 1)), remaining) - len(active) - len(terminating)
        if want > 0:
            delay = self._backoff_left(uid, status.get("failed", 0))
            if delay > 0:
                self.enqueue_after(key, delay)
            else:
                for _ in range(want):  # one at a time: each Indexed pod takes the next free index
                    active.append(self._create_pod(job, pods + active))
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None:
            started = m.parse_timestamp(status["startTime"])
            self.enqueue_after(
                key, (started + datetime.timedelta(seconds=deadline) - m.now()).total_seconds()
            )
        self._write(job, status, active, terminating)

    def _failure(
        self, spec: dict[str, Any], status: dict[str, Any], active: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and status.get("startTime"):
            started = m.parse_timestamp(status["startTime"])
            if m.now() >= started + datetime.timedelta(seconds=deadline):
                return ("DeadlineExceeded", "Job was active longer than specified deadline")
        failures = int(status.get("failed", 0))
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
            failures += sum(
                int(c.get("restartCount") or 0)
                for p in active
                for c in (p.get("status") or {}).get("containerStatuses") or ()
            )
        if failures > int(spec.get("backoffLimit", 6)):
            return ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        return None

    def _backoff_left(self, uid: str, failures: int) -> float:
        last = self._last_failure.get(uid)
        if last is None or failures == 0:
            return 0.0
        delay = min(self.timing.job_backoff * 2 ** (failures - 1), self.timing.job_backoff_max)
        return float(delay) - (m.now() - last).total_seconds()

    def _pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        selector = selector_from_object((job.get("spec") or {}).get("selector"))
        uid = job["metadata"]["uid"]
        found = []
        for pod in self.store.iter(self.resource(POD_KEY), job["metadata"].get("namespace")):
            ref = m.controller_of(pod)
            if ref is not None and ref.get("uid") == uid and selector.matches(pod["metadata"].get("labels")):
                found.append(pod)
        return found

    def _create_pod(self, job: dict[str, Any], existing: list[dict[str, Any]]) -> dict[str, Any]:
        spec = job.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        metadata = template.get("metadata") or {}
        pod: dict[str, Any] = {
            "metadata": {
                "generateName": f"{job['metadata']['name']}-",
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "ownerReferences": [m.owner_reference(job)],
            },
            "spec": template.get("spec") or {},
        }
        if spec.get("completionMode") == "Indexed":
            taken = {
                int((p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, -1))
                for p in existing
                if (p.get("status") or {}).get("phase") != "Failed"
            }
            index = next(
                i for i in range(int(spec.get("completions") or 1) + len(taken) + 1) if i not in taken
            )
            pod["metadata"]["annotations"][COMPLETION_INDEX] = str(index)
            pod["metadata"]["labels"][COMPLETION_INDEX] = str(index)
            pod["metadata"]["generateName"] = f"{job['metadata']['name']}-{index}-"
            for container in pod["spec"].get("containers") or ():
                container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        return self.store.create(self.resource(POD_KEY), job["metadata"].get("namespace"), pod)

    def _delete(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            if self.store.peek(self.resource(POD_KEY), pod["metadata"]["namespace"], pod["metadata"]["name"]):
                self.store.delete(
                    self.resource(POD_KEY), pod["metadata"]["namespace"], pod["metadata"]["name"]
                )

    def _write(
        self,
        job: dict[str, Any],
        status: dict[str, Any],
        active: list[dict[str, Any]],
        terminating: list[dict[str, Any]],
    ) -> None:
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_true(p.get("status"), "Ready"))
        status["terminating"] = len(terminating)
        for field in ("active", "succeeded", "failed"):
            if not status.get(field):
                status.pop(field, None)
        status.setdefault("uncountedTerminatedPods", {})
        self.store.write_status(self.resource(JOB_KEY), job, status)

    def _expire(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        condition = get_condition(status, _finished(status) or "")
        finished = m.parse_timestamp(str((condition or {}).get("lastTransitionTime") or m.timestamp()))
        left = (finished + datetime.timedelta(seconds=int(ttl)) - m.now()).total_seconds()
        namespace, name = job["metadata"].get("namespace"), job["metadata"]["name"]
        if left > 0:
            self.enqueue_after((namespace or "", name), left)
        else:
            self.store.delete(self.resource(JOB_KEY), namespace, name, propagation="Foreground")
            self._counted.pop(job["metadata"]["uid"], None)
