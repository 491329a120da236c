"""The scheduler: binds each unscheduled pod to a Ready node that fits its nodeSelector.

Placement is "fewest pods first" among fitting nodes; there is no resource accounting. A pod
with no fitting node gets ``PodScheduled=False`` (reason Unschedulable) and is retried when nodes
change, as kube-scheduler reports it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .. import meta as m
from ..conditions import set_condition
from ..resources import NODE_KEY, POD_KEY
from ..store import Event
from .base import Controller, Key


def node_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not (node.get("spec") or {}).get("unschedulable")


class Scheduler(Controller):
    name = "scheduler"

    def keys_for(self, event: Event) -> Iterable[Key]:
        if event.resource.key == POD_KEY and event.type != "DELETED":
            if not (event.obj.get("spec") or {}).get("nodeName"):
                yield (event.obj["metadata"].get("namespace", ""), event.obj["metadata"]["name"])
        elif event.resource.key == NODE_KEY or (event.resource.key == POD_KEY and event.type == "DELETED"):
            for pod in self.store.iter(self.resource(POD_KEY)):
                if not (pod.get("spec") or {}).get("nodeName") and not m.is_terminating(pod):
                    yield (pod["metadata"]["namespace"], pod["metadata"]["name"])

    def reconcile(self, key: Key) -> None:
        pods = self.resource(POD_KEY)
        pod = self.store.peek(pods, key[0], key[1])
        if pod is None or (pod.get("spec") or {}).get("nodeName") or m.is_terminating(pod):
            return
        wanted = (pod.get("spec") or {}).get("nodeSelector") or {}
        nodes = [n for n in self.store.iter(self.resource(NODE_KEY)) if node_ready(n)]
        fitting = [
            n
            for n in nodes
            if all(((n["metadata"].get("labels") or {}).get(k) == v) for k, v in wanted.items())
        ]
        if not fitting:
            status = copy.deepcopy(pod.get("status") or {})
            total = len(list(self.store.iter(self.resource(NODE_KEY))))
            set_condition(
                status,
                "PodScheduled",
                "False",
                "Unschedulable",
                f"0/{total} nodes are available: {total} node(s) didn't match Pod's node "
                "affinity/selector or were not ready.",
            )
            self.store.write_status(pods, pod, status)
            return
        load: dict[str, int] = {n["metadata"]["name"]: 0 for n in fitting}
        for other in self.store.iter(pods):
            node = (other.get("spec") or {}).get("nodeName")
            if node in load:
                load[node] += 1
        chosen = min(sorted(load), key=lambda name: load[name])
        bound = self.store.get(pods, key[0], key[1])
        bound["spec"]["nodeName"] = chosen
        status = bound.setdefault("status", {})
        set_condition(status, "PodScheduled", "True")
        self.store.replace(pods, key[0], key[1], bound)
        current = self.store.peek(pods, key[0], key[1])
        if current is not None:
            self.store.write_status(pods, current, status)
