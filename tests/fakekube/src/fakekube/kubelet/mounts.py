"""Mounting as far as it can fail visibly: Secret and ConfigMap volumes whose object is missing.

A real kubelet does not start a pod's containers until every volume is mounted; a Secret or
ConfigMap volume naming an object that does not exist (and is not ``optional``) fails
``MountVolume.SetUp``: the containers stay waiting with reason ``ContainerCreating`` and the
kubelet records a Warning event ``FailedMount`` on the pod, retrying until the object appears.
The files themselves are not materialised (docs/fakekube.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import meta as m
from ..errors import ApiError
from ..resources import CONFIGMAP_KEY, EVENT_KEY, SECRET_KEY
from ..store import Store


def mount_failure(store: Store, pod: dict[str, Any]) -> str | None:
    """Why a volume of ``pod`` cannot be mounted (the kubelet's FailedMount message), or None."""
    namespace = pod["metadata"]["namespace"]
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        for field, key, kind, name_field in (
            ("secret", SECRET_KEY, "secret", "secretName"),
            ("configMap", CONFIGMAP_KEY, "configmap", "name"),
        ):
            source = volume.get(field)
            if source is None or source.get("optional"):
                continue
            wanted = str(source.get(name_field) or "")
            if store.peek(store.registry.by_key(key), namespace, wanted) is None:
                volume_name = volume.get("name")
                return f'MountVolume.SetUp failed for volume "{volume_name}" : {kind} "{wanted}" not found'
    return None


def record_event(store: Store, pod: dict[str, Any], reason: str, message: str, node: str) -> None:
    """A Warning event on ``pod`` from the kubelet; a repeat bumps ``count`` as event aggregation does."""
    metadata = pod["metadata"]
    digest = hashlib.sha256(f"{metadata['uid']}/{reason}/{message}".encode()).hexdigest()[:16]
    name = f"{metadata['name']}.{digest}"
    events = store.registry.by_key(EVENT_KEY)
    now = m.timestamp()
    found = store.peek(events, metadata["namespace"], name)
    try:
        if found is not None:
            store.replace(
                events,
                metadata["namespace"],
                name,
                {**found, "count": int(found.get("count", 1)) + 1, "lastTimestamp": now},
            )
            return
        store.create(
            events,
            metadata["namespace"],
            {
                "metadata": {"name": name, "namespace": metadata["namespace"]},
                "involvedObject": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "namespace": metadata["namespace"],
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet",
                "reportingInstance": node,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
            },
        )
    except ApiError:
        pass  # events are best effort, as on a real kubelet
