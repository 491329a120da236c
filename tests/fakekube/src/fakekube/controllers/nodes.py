"""Node loss: what the node lifecycle controller and pod GC do when a kubelet stops for good.

The kubelet's processes die without a word; the Node turns ``Ready=Unknown``
(NodeStatusUnknown) with the unreachable taints; its pods are marked ``Failed`` with reason
``NodeLost`` and a ``DisruptionTarget`` condition, then (by default) force-deleted, as pod GC
does for pods bound to a node that is gone. Controllers then replace them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .. import meta as m
from ..conditions import set_condition
from ..resources import NODE_KEY, POD_KEY

if TYPE_CHECKING:
    from ..cluster import FakeCluster


async def lose_node(cluster: FakeCluster, node: str, *, delete_pods: bool = True) -> None:
    store = cluster.store
    assert store is not None
    kubelet = cluster.kubelets[node]
    await kubelet.crash()
    nodes, pods = store.registry.by_key(NODE_KEY), store.registry.by_key(POD_KEY)
    found = store.get(nodes, None, node)
    found.setdefault("spec", {})["taints"] = [
        {"key": "node.kubernetes.io/unreachable", "effect": effect, "timeAdded": m.timestamp()}
        for effect in ("NoSchedule", "NoExecute")
    ]
    store.replace(nodes, None, node, found)
    status = copy.deepcopy(store.get(nodes, None, node).get("status") or {})
    for condition in status.get("conditions") or ():
        condition.update(
            {
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastTransitionTime": m.timestamp(),
            }
        )
    store.write_status(nodes, store.get(nodes, None, node), status)
    for pod in [p for p in store.iter(pods) if (p.get("spec") or {}).get("nodeName") == node]:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        pod_status = copy.deepcopy(pod.get("status") or {})
        if pod_status.get("phase") not in ("Succeeded", "Failed"):
            pod_status.update(
                {
                    "phase": "Failed",
                    "reason": "NodeLost",
                    "message": f"Node {node} which was running pod {name} is unresponsive",
                }
            )
            set_condition(pod_status, "Ready", "False", "NodeLost", "Kubelet stopped posting node status.")
            set_condition(
                pod_status, "DisruptionTarget", "True", "DeletionByPodGC", "PodGC: node no longer exists"
            )
            store.write_status(pods, pod, pod_status)
        if delete_pods:
            store.force_remove(pods, namespace, name)
