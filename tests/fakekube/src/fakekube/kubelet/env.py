"""A container's argv and environment, resolved the way the kubelet does before starting it.

``command``/``args`` override the image's entrypoint/CMD; ``$(VAR)`` references expand from the
container's own environment (``$$`` escapes); ``env`` supports literal values and ``valueFrom``
(``fieldRef``, ``resourceFieldRef``, ``configMapKeyRef``, ``secretKeyRef``); ``envFrom`` takes
ConfigMaps and Secrets whole. Processes share the host, so a pod's IP (a distinct loopback
address) is also given as ``FAKEKUBE_POD_IP`` for the command to bind to.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from typing import Any

from ..config import Image
from ..resources import CONFIGMAP_KEY, SECRET_KEY
from ..store import Store

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# What every process inherits from the host: enough to find interpreters, nothing of the test's env.
HOST_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class EnvError(Exception):
    """A missing ConfigMap/Secret key: the container stays waiting with CreateContainerConfigError."""


def expand(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def argv_for(container: Mapping[str, Any], image: Image, env: Mapping[str, str]) -> list[str]:
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = list(command) + list(args or [])
    else:
        argv = list(image.entrypoint) + (list(args) if args is not None else list(image.cmd))
    return [expand(str(part), env) for part in argv]


def _field(pod: Mapping[str, Any], path: str) -> str:
    metadata = pod.get("metadata") or {}
    match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": (pod.get("status") or {}).get("podIP"),
        "status.hostIP": (pod.get("status") or {}).get("hostIP"),
    }
    return str(values.get(path) or "")


def _lookup(store: Store, namespace: str, ref: Mapping[str, Any], secret: bool) -> str | None:
    resource = store.registry.by_key(SECRET_KEY if secret else CONFIGMAP_KEY)
    found = store.peek(resource, namespace, str(ref.get("name")))
    data = (found or {}).get("data") or {}
    if found is None or ref.get("key") not in data:
        if ref.get("optional"):
            return None
        kind = "secret" if secret else "configmap"
        raise EnvError(
            f'{kind} "{ref.get("name")}" not found'
            if found is None
            else f"couldn't find key {ref.get('key')} in {kind.capitalize()} {namespace}/{ref.get('name')}"
        )
    value = str(data[ref["key"]])
    return base64.b64decode(value).decode(errors="replace") if secret else value


def environment(
    store: Store, pod: Mapping[str, Any], container: Mapping[str, Any], image: Image, extra: Mapping[str, str]
) -> dict[str, str]:
    namespace = str((pod.get("metadata") or {}).get("namespace"))
    env: dict[str, str] = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
    env.update(dict(image.env))
    env.update(extra)
    for source in container.get("envFrom") or ():
        prefix = str(source.get("prefix") or "")
        for key, secret in (("configMapRef", False), ("secretRef", True)):
            ref = source.get(key)
            if ref is None:
                continue
            resource = store.registry.by_key(SECRET_KEY if secret else CONFIGMAP_KEY)
            found = store.peek(resource, namespace, str(ref.get("name")))
            if found is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{"secret" if secret else "configmap"} "{ref.get("name")}" not found')
            for name, value in (found.get("data") or {}).items():
                env[prefix + name] = (
                    base64.b64decode(value).decode(errors="replace") if secret else str(value)
                )
    for item in container.get("env") or ():
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = _field(pod, str(source["fieldRef"]["fieldPath"]))
        elif "resourceFieldRef" in source:
            resource_name = str(source["resourceFieldRef"]["resource"])
            kind, _, what = resource_name.partition(".")
            env[name] = str(((container.get("resources") or {}).get(kind) or {}).get(what, "0"))
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            secret = "secretKeyRef" in source
            value = _lookup(store, namespace, source["secretKeyRef" if secret else "configMapKeyRef"], secret)
            if value is not None:
                env[name] = value
    return env
