"""Deployments -> ReplicaSets -> Pods.

The Deployment controller keeps one ReplicaSet per pod template (named ``<deployment>-<hash>``,
labelled ``pod-template-hash``), rolls from old to new within ``maxSurge``/``maxUnavailable``
(or all at once for ``Recreate``), keeps ``revisionHistoryLimit`` old ReplicaSets and reports
``Available``/``Progressing`` conditions (``ProgressDeadlineExceeded`` past the deadline). The
ReplicaSet controller creates and deletes pods to match ``replicas``, deleting unscheduled,
pending and unready pods first, and counts availability with ``minReadySeconds``.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from .. import meta as m
from ..conditions import get_condition, is_true, set_condition
from ..config import Timing
from ..resources import DEPLOYMENT_KEY, POD_KEY, REPLICASET_KEY
from ..selectors import selector_from_object
from ..store import Event, Store
from .base import Controller, Key, owner_keys

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: dict[str, Any], collisions: int = 0) -> str:
    """A stable short hash of a pod template, spelled in apimachinery's safe alphabet."""
    digest = hashlib.sha256(json.dumps([template, collisions], sort_keys=True).encode()).digest()
    number = str(int.from_bytes(digest[:4], "big"))
    return "".join(m.SAFE_ALPHABET[ord(c) % len(m.SAFE_ALPHABET)] for c in number)


def _scaled(value: Any, replicas: int, *, round_up: bool) -> int:
    """An int-or-percent (``25%``) resolved against ``replicas`` as intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def pod_ready_since(pod: dict[str, Any]) -> datetime.datetime | None:
    condition = get_condition(pod.get("status"), "Ready")
    if condition is None or condition.get("status") != "True" or m.is_terminating(pod):
        return None
    return m.parse_timestamp(str(condition.get("lastTransitionTime") or m.timestamp()))


def _owned(store: Store, resource_key: tuple[str, str], owner: dict[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    found = []
    for obj in store.iter(store.registry.by_key(resource_key), owner["metadata"].get("namespace")):
        ref = m.controller_of(obj)
        if ref is not None and ref.get("uid") == uid:
            found.append(obj)
    return found


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def keys_for(self, event: Event) -> Iterable[Key]:
        if event.resource.key == REPLICASET_KEY:
            yield (event.obj["metadata"].get("namespace", ""), event.obj["metadata"]["name"])
        elif event.resource.key == POD_KEY:
            yield from owner_keys(event, "ReplicaSet")

    def reconcile(self, key: Key) -> None:
        replicasets = self.resource(REPLICASET_KEY)
        rs = self.store.peek(replicasets, key[0], key[1])
        if rs is None or m.is_terminating(rs):
            return
        spec = rs.get("spec") or {}
        selector = selector_from_object(spec.get("selector"))
        pods = [p for p in _owned(self.store, POD_KEY, rs) if selector.matches(p["metadata"].get("labels"))]
        active = [
            p
            for p in pods
            if not m.is_terminating(p) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        wanted = int(spec.get("replicas", 1))
        if len(active) < wanted:
            template = copy.deepcopy(spec.get("template") or {})
            metadata = template.get("metadata") or {}
            for _ in range(wanted - len(active)):
                active.append(
                    self.store.create(
                        self.resource(POD_KEY),
                        key[0],
                        {
                            "metadata": {
                                "generateName": f"{key[1]}-",
                                "labels": metadata.get("labels") or {},
                                "annotations": metadata.get("annotations") or {},
                                "ownerReferences": [m.owner_reference(rs)],
                            },
                            "spec": copy.deepcopy(template.get("spec") or {}),
                        },
                    )
                )
        elif len(active) > wanted:

            def rank(pod: dict[str, Any]) -> tuple[int, int, int, str]:
                status = pod.get("status") or {}
                return (
                    0 if not (pod.get("spec") or {}).get("nodeName") else 1,
                    0 if status.get("phase") == "Pending" else 1,
                    0 if not is_true(status, "Ready") else 1,
                    # newest first: reverse the creation time
                    "".join(chr(255 - ord(c)) for c in str(pod["metadata"].get("creationTimestamp"))),
                )

            for pod in sorted(active, key=rank)[: len(active) - wanted]:
                self.store.delete(self.resource(POD_KEY), key[0], pod["metadata"]["name"])
                active.remove(pod)
        min_ready = int(spec.get("minReadySeconds") or 0)
        ready = available = 0
        now = m.now()
        for pod in active:
            since = pod_ready_since(pod)
            if since is None:
                continue
            ready += 1
            left = (since + datetime.timedelta(seconds=min_ready) - now).total_seconds()
            if left <= 0:
                available += 1
            else:
                self.enqueue_after(key, left)
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        terminating = sum(1 for p in pods if m.is_terminating(p))
        if terminating:
            status["terminatingReplicas"] = terminating
        self.store.write_status(
            replicasets, rs, {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        )


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, store: Store, timing: Timing) -> None:
        super().__init__(store)
        self.timing = timing

    def keys_for(self, event: Event) -> Iterable[Key]:
        if event.resource.key == DEPLOYMENT_KEY:
            yield (event.obj["metadata"].get("namespace", ""), event.obj["metadata"]["name"])
        elif event.resource.key == REPLICASET_KEY:
            yield from owner_keys(event, "Deployment")

    def reconcile(self, key: Key) -> None:
        deployments = self.resource(DEPLOYMENT_KEY)
        deployment = self.store.peek(deployments, key[0], key[1])
        if deployment is None or m.is_terminating(deployment):
            return
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        owned = sorted(
            _owned(self.store, REPLICASET_KEY, deployment),
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")),
        )
        template = spec.get("template") or {}
        digest = template_hash(template)
        new_rs = next(
            (rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == digest), None
        )
        olds = [rs for rs in owned if rs is not new_rs]
        if not spec.get("paused"):
            if new_rs is None:
                new_rs = self._create_replicaset(deployment, digest, owned)
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                self._recreate(new_rs, olds, replicas)
            else:
                self._roll(deployment, new_rs, olds, replicas)
            self._prune(deployment, olds)
        self._status(
            deployment,
            new_rs,
            [
                rs
                for rs in _owned(self.store, REPLICASET_KEY, deployment)
                if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
            ],
        )

    def _create_replicaset(
        self, deployment: dict[str, Any], digest: str, owned: list[dict[str, Any]]
    ) -> dict[str, Any]:
        spec = deployment.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        revision = 1 + max(
            (int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned), default=0
        )
        replicas = int(spec.get("replicas", 1))
        surge = _scaled(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge"), replicas, round_up=True
        )
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        body = {
            "metadata": {
                "name": f"{deployment['metadata']['name']}-{digest}",
                "labels": labels,
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                },
                "ownerReferences": [m.owner_reference(deployment)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        return self.store.create(self.resource(REPLICASET_KEY), deployment["metadata"].get("namespace"), body)

    def _scale(self, rs: dict[str, Any], replicas: int) -> None:
        if int((rs.get("spec") or {}).get("replicas", 0)) == replicas:
            return
        current = self.store.get(
            self.resource(REPLICASET_KEY), rs["metadata"]["namespace"], rs["metadata"]["name"]
        )
        current["spec"]["replicas"] = replicas
        self.store.replace(
            self.resource(REPLICASET_KEY), rs["metadata"]["namespace"], rs["metadata"]["name"], current
        )

    def _recreate(self, new_rs: dict[str, Any], olds: list[dict[str, Any]], replicas: int) -> None:
        for rs in olds:
            self._scale(rs, 0)
        if any(_owned(self.store, POD_KEY, rs) for rs in olds):
            return  # wait for every old pod to be gone
        self._scale(new_rs, replicas)

    def _roll(
        self, deployment: dict[str, Any], new_rs: dict[str, Any], olds: list[dict[str, Any]], replicas: int
    ) -> None:
        rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        new_spec = int((new_rs.get("spec") or {}).get("replicas", 0))
        total = new_spec + sum(int((rs.get("spec") or {}).get("replicas", 0)) for rs in olds)
        # As the real controller: scale the new ReplicaSet up first; scale old ones down on a later pass.
        if new_spec > replicas:
            self._scale(new_rs, replicas)
            return
        if new_spec < replicas and replicas + surge - total > 0:
            self._scale(new_rs, min(replicas, new_spec + replicas + surge - total))
            return
        min_ready = int((deployment.get("spec") or {}).get("minReadySeconds") or 0)
        available_of = {rs["metadata"]["uid"]: self._available_pods(rs, min_ready) for rs in [new_rs, *olds]}
        min_available = replicas - unavailable
        # Never below minAvailable, counting the new set's not-yet-available pods as missing.
        room = total - min_available - (new_spec - available_of[new_rs["metadata"]["uid"]])
        for rs in olds:  # unhealthy old replicas go first
            uid = rs["metadata"]["uid"]
            spec_replicas = int((rs.get("spec") or {}).get("replicas", 0))
            unhealthy = min(max(spec_replicas - available_of[uid], 0), max(room, 0))
            room -= unhealthy
            healthy = min(
                spec_replicas - unhealthy,
                available_of[uid],
                max(room, 0),
                max(sum(available_of.values()) - min_available, 0),
            )
            room -= healthy
            available_of[uid] -= healthy
            if unhealthy + healthy > 0:
                self._scale(rs, spec_replicas - unhealthy - healthy)

    def _available_pods(self, rs: dict[str, Any], min_ready: int) -> int:
        now = m.now()
        count = 0
        for pod in _owned(self.store, POD_KEY, rs):
            since = pod_ready_since(pod)
            if since is not None and since + datetime.timedelta(seconds=min_ready) <= now:
                count += 1
        return count

    def _prune(self, deployment: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        limit = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in olds
            if int((rs.get("spec") or {}).get("replicas", 0)) == 0
            and int((rs.get("status") or {}).get("replicas", 0)) == 0
        ]
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.store.delete(
                self.resource(REPLICASET_KEY), rs["metadata"]["namespace"], rs["metadata"]["name"]
            )

    def _status(
        self, deployment: dict[str, Any], new_rs: dict[str, Any] | None, olds: list[dict[str, Any]]
    ) -> None:
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        every = ([new_rs] if new_rs is not None else []) + olds

        def total(field: str, sets: list[dict[str, Any]]) -> int:
            return sum(int((rs.get("status") or {}).get(field, 0)) for rs in sets)

        status = copy.deepcopy(deployment.get("status") or {})
        status.update(
            {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": total("replicas", every),
                "updatedReplicas": total("replicas", [new_rs] if new_rs is not None else []),
                "readyReplicas": total("readyReplicas", every),
                "availableReplicas": total("availableReplicas", every),
            }
        )
        status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
        for field in (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ):
            if not status[field]:
                del status[field]
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            unavailable = 0
        available = status.get("availableReplicas", 0) >= replicas - unavailable
        set_condition(
            status,
            "Available",
            "True" if available else "False",
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
            times=("lastUpdateTime",),
        )
        name = new_rs["metadata"]["name"] if new_rs is not None else ""
        complete = (
            new_rs is not None
            and status.get("updatedReplicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
        )
        progressing = get_condition(status, "Progressing")
        if spec.get("paused"):
            set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                times=("lastUpdateTime",),
            )
        elif complete:
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
                times=("lastUpdateTime",),
            )
        elif progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
            pass
        else:
            deadline = spec.get("progressDeadlineSeconds")
            changed = set_condition(
                status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{name}" is progressing.',
                times=("lastUpdateTime",),
            )
            current = get_condition(status, "Progressing") or {}
            started = m.parse_timestamp(str(current.get("lastUpdateTime") or m.timestamp()))
            if deadline is not None and not changed:
                left = (started + datetime.timedelta(seconds=int(deadline)) - m.now()).total_seconds()
                if left <= 0:
                    set_condition(
                        status,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{name}" has timed out progressing.',
                        times=("lastUpdateTime",),
                    )
                else:
                    self.enqueue_after(
                        (deployment["metadata"]["namespace"], deployment["metadata"]["name"]),
                        min(left, self.timing.deployment_resync),
                    )
            elif deadline is not None:
                self.enqueue_after(
                    (deployment["metadata"]["namespace"], deployment["metadata"]["name"]),
                    min(float(deadline), self.timing.deployment_resync),
                )
        self.store.write_status(self.resource(DEPLOYMENT_KEY), deployment, status)
