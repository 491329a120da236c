"""Discovery documents (/api, /apis, /apis/<g>/<v>, /version) and kubectl's Table rendering.

kubectl and the official client find resources through discovery, so these list exactly what the
registry serves, subresources included (``pods/log``, ``deployments/scale`` as ``autoscaling/v1 Scale``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from . import meta as m
from .resources import ResourceRegistry, ResourceType
from .schema import GIT_VERSION, KUBERNETES_VERSION

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
}


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(host: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in sorted(registry.group_versions().items()) if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, name: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in registry if r.group == group and r.version == version]
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for resource in sorted(served, key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(resource.verbs),
            "storageVersionHash": hashlib.sha256(
                f"{resource.api_version}/{resource.kind}".encode()
            ).hexdigest()[:11],
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        resources.append(entry)
        for sub in resource.subresources:
            item: dict[str, Any] = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": _SUBRESOURCE_VERBS[sub],
            }
            if sub == "scale":
                item.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            resources.append(item)
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _age(created: str | None) -> str:
    if not created:
        return "<unknown>"
    seconds = int((m.now() - m.parse_timestamp(created)).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _pod_cells(pod: Mapping[str, Any]) -> list[Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = (pod.get("status") or {}).get("reason") or (pod.get("status") or {}).get("phase") or "Pending"
    for status in statuses:
        waiting = (status.get("state") or {}).get("waiting")
        terminated = (status.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    if m.is_terminating(pod):
        reason = "Terminating"
    return [f"{ready}/{total}", reason, sum(int(s.get("restartCount") or 0) for s in statuses)]


def _extra(resource: ResourceType) -> list[tuple[str, str]]:
    if resource.key == ("", "pods"):
        return [("Ready", "string"), ("Status", "string"), ("Restarts", "integer")]
    if resource.key == ("apps", "deployments"):
        return [("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer")]
    if resource.key == ("batch", "jobs"):
        return [("Status", "string"), ("Completions", "string")]
    return []


def _extra_cells(resource: ResourceType, obj: Mapping[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    if resource.key == ("", "pods"):
        return _pod_cells(obj)
    if resource.key == ("apps", "deployments"):
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        return [
            f"{status.get('readyReplicas', 0)}/{wanted}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
        ]
    if resource.key == ("batch", "jobs"):
        done = [
            c["type"]
            for c in status.get("conditions") or ()
            if c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
        ]
        state = done[0] if done else "Running"
        return [state, f"{status.get('succeeded', 0)}/{(obj.get('spec') or {}).get('completions', 1)}"]
    return []


def table(
    resource: ResourceType, items: list[dict[str, Any]], resource_version: str, include: str = "Metadata"
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1 Table``: what ``kubectl get`` asks for and prints column by column."""
    columns = [("Name", "string"), *_extra(resource), ("Age", "string")]
    rows = []
    for obj in items:
        partial: dict[str, Any] = (
            obj
            if include == "Object"
            else {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        )
        row: dict[str, Any] = {
            "cells": [
                obj["metadata"]["name"],
                *_extra_cells(resource, obj),
                _age(obj["metadata"].get("creationTimestamp")),
            ],
        }
        if include != "None":
            row["object"] = partial
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": 0,
            }
            for name, kind in columns
        ],
        "rows": rows,
    }
