"""The EndpointSlice controller: a Service's selected pods as ``discovery.k8s.io/v1`` endpoints.

Each Service with a selector gets slices labelled ``kubernetes.io/service-name`` and owned by the
Service. An endpoint is a pod with an IP: ``ready`` from the pod's Ready condition (always true
with ``publishNotReadyAddresses``), ``serving`` likewise but kept while terminating,
``terminating`` once deletion started. Ports are the Service's ports with ``targetPort`` resolved
against each pod (named ports looked up in its containers); pods resolving to different ports
land in different slices, as the real controller does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import meta as m
from ..conditions import is_true
from ..resources import ENDPOINTSLICE_KEY, POD_KEY, SERVICE_KEY
from ..selectors import selector_from_map
from ..store import Event
from .base import Controller, Key

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"


def _resolve_ports(service: dict[str, Any], pod: dict[str, Any]) -> tuple[tuple[str, int, str], ...] | None:
    resolved = []
    for port in (service.get("spec") or {}).get("ports") or ():
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str) and not target.isdigit():
            number = next(
                (
                    p.get("containerPort")
                    for c in (pod.get("spec") or {}).get("containers") or ()
                    for p in c.get("ports") or ()
                    if p.get("name") == target
                ),
                None,
            )
            if number is None:
                continue
            target = number
        resolved.append((str(port.get("name") or ""), int(target), str(port.get("protocol") or "TCP")))
    return tuple(resolved)


class EndpointSliceController(Controller):
    name = "endpointslice-controller"

    def keys_for(self, event: Event) -> Iterable[Key]:
        key = event.resource.key
        if key == SERVICE_KEY:
            yield (event.obj["metadata"]["namespace"], event.obj["metadata"]["name"])
        elif key == ENDPOINTSLICE_KEY:
            service = (event.obj["metadata"].get("labels") or {}).get(SERVICE_NAME)
            if service and (event.obj["metadata"].get("labels") or {}).get(MANAGED_BY) == CONTROLLER:
                yield (event.obj["metadata"]["namespace"], service)
        elif key == POD_KEY:
            namespace = event.obj["metadata"]["namespace"]
            labels = [o["metadata"].get("labels") for o in (event.obj, event.old) if o is not None]
            for service in self.store.iter(self.resource(SERVICE_KEY), namespace):
                selector = (service.get("spec") or {}).get("selector")
                if selector and any(selector_from_map(selector).matches(lab) for lab in labels):
                    yield (namespace, service["metadata"]["name"])

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        service = self.store.peek(self.resource(SERVICE_KEY), namespace, name)
        if service is None or not (service.get("spec") or {}).get("selector"):
            return
        spec = service["spec"]
        selector = selector_from_map(spec["selector"])
        publish = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[tuple[tuple[str, int, str], ...], list[dict[str, Any]]] = {}
        for pod in self.store.iter(self.resource(POD_KEY), namespace):
            status = pod.get("status") or {}
            if not selector.matches(pod["metadata"].get("labels")) or not status.get("podIP"):
                continue
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            ports = _resolve_ports(service, pod)
            if ports is None:
                continue
            terminating = m.is_terminating(pod)
            ready = is_true(status, "Ready")
            endpoint: dict[str, Any] = {
                "addresses": [status["podIP"]],
                "conditions": {
                    "ready": publish or (ready and not terminating),
                    "serving": publish or ready,
                    "terminating": terminating,
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            if (pod.get("spec") or {}).get("nodeName"):
                endpoint["nodeName"] = pod["spec"]["nodeName"]
            groups.setdefault(ports, []).append(endpoint)
        if not groups:
            groups[()] = []
        slices = self.resource(ENDPOINTSLICE_KEY)
        existing = [
            s
            for s in self.store.iter(slices, namespace)
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
            and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == CONTROLLER
        ]
        unused = list(existing)
        for ports, endpoints in groups.items():
            wanted_ports = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
            match = next(
                (
                    s
                    for s in unused
                    if [(p.get("name") or "", p.get("port"), p.get("protocol")) for p in s.get("ports") or ()]
                    == list(ports)
                ),
                unused[0] if unused else None,
            )
            labels = {**(service["metadata"].get("labels") or {}), SERVICE_NAME: name, MANAGED_BY: CONTROLLER}
            body: dict[str, Any] = {"addressType": "IPv4", "endpoints": endpoints}
            if wanted_ports:
                body["ports"] = wanted_ports
            if match is None:
                self.store.create(
                    slices,
                    namespace,
                    {
                        "metadata": {
                            "generateName": f"{name}-",
                            "labels": labels,
                            "ownerReferences": [m.owner_reference(service)],
                        },
                        **body,
                    },
                )
                continue
            unused.remove(match)
            if (match.get("endpoints"), match.get("ports"), match["metadata"].get("labels")) == (
                body["endpoints"],
                body.get("ports"),
                labels,
            ):
                continue
            updated = self.store.get(slices, namespace, match["metadata"]["name"])
            updated.update(body)
            if not wanted_ports:
                updated.pop("ports", None)
            updated["metadata"]["labels"] = labels
            self.store.replace(slices, namespace, match["metadata"]["name"], updated)
        for stale in unused:
            self.store.delete(slices, namespace, stale["metadata"]["name"])
