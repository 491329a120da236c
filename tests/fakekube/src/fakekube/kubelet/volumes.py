"""A pod's volumes on disk, and what each container mounts (pod-network mode).

Materialised in the pod's sandbox directory: ``emptyDir`` (a directory), ``configMap`` and
``secret`` (a file per key, or per ``items`` entry; Secrets decoded), the projected
service-account token at ``/var/run/secrets/kubernetes.io/serviceaccount`` (``token``,
``ca.crt``, ``namespace``: what in-cluster client configuration reads) unless
``automountServiceAccountToken`` is false on the pod or its ServiceAccount, and the pod's
``/etc/hosts`` (localhost and the pod's own name), as the kubelet writes them. The token is a
bearer token of user ``system:serviceaccount:<namespace>:<name>`` at the API server, so the audit
record tells the pod's requests apart. Also ``/etc/resolv.conf`` without a nameserver (there is
no cluster DNS). Other volume types are not materialised.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..resources import CONFIGMAP_KEY, SECRET_KEY
from ..store import Store

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
Mount = tuple[str, str, bool]  # source on the host, target in the container, read-only


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


class PodVolumes:
    """The files of one pod's volumes, written once when the pod starts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs: dict[str, Path] = {}
        self.service_account: Path | None = None
        self.hosts = root / "etc-hosts"
        self.resolv = root / "resolv.conf"

    def write(
        self,
        store: Store,
        pod: Mapping[str, Any],
        ip: str,
        *,
        token_for: Callable[[str], str],
        ca_pem: bytes,
    ) -> None:
        metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        namespace = str(metadata.get("namespace"))
        self.root.mkdir(parents=True, exist_ok=True)
        for volume in spec.get("volumes") or ():
            target = self.root / "volumes" / str(volume["name"])
            target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                target.chmod(0o777)  # as the kubelet makes it: any container user may write
            self.dirs[str(volume["name"])] = target
            for key, secret in (("configMap", False), ("secret", True)):
                if key in volume:
                    self._write_keys(store, namespace, volume[key], secret, target)
        hostname = str(spec.get("hostname") or metadata.get("name"))
        self.hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{ip}\t{hostname}\n")
        # No cluster DNS: with no nameserver, lookups go to the pod's own 127.0.0.1:53 and fail at
        # once (ICMP unreachable), rather than waiting for the host's resolver the pod cannot reach.
        self.resolv.write_text("# fakekube: no cluster DNS; Service names do not resolve\n")
        account = str(spec.get("serviceAccountName") or "default")
        found = store.peek(store.registry.by_key(("", "serviceaccounts")), namespace, account) or {}
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = found.get("automountServiceAccountToken", True)
        if automount:
            directory = self.root / "serviceaccount"
            directory.mkdir(exist_ok=True)
            (directory / "token").write_text(token_for(service_account_user(namespace, account)))
            (directory / "ca.crt").write_bytes(ca_pem)
            (directory / "namespace").write_text(namespace)
            self.service_account = directory

    @staticmethod
    def _write_keys(
        store: Store, namespace: str, source: Mapping[str, Any], secret: bool, target: Path
    ) -> None:
        resource = store.registry.by_key(SECRET_KEY if secret else CONFIGMAP_KEY)
        name = source.get("secretName" if secret else "name")
        found = store.peek(resource, namespace, str(name)) or {}
        if secret:
            data = {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
        else:
            data = {k: str(v).encode() for k, v in (found.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()})
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] in data:
                path = target / str(item["path"])
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data[item["key"]])

    def mounts(self, container: Mapping[str, Any]) -> list[Mount]:
        """The container's volumeMounts that resolve, plus the token and /etc/hosts."""
        found: list[Mount] = []
        for mount in container.get("volumeMounts") or ():
            source = self.dirs.get(str(mount["name"]))
            if source is None:
                continue
            if mount.get("subPath"):
                source = source / str(mount["subPath"])
            found.append((str(source), str(mount["mountPath"]), bool(mount.get("readOnly"))))
        if self.service_account is not None and not any(m[1] == SERVICE_ACCOUNT_DIR for m in found):
            found.append((str(self.service_account), SERVICE_ACCOUNT_DIR, True))
        found.append((str(self.hosts), "/etc/hosts", False))
        found.append((str(self.resolv), "/etc/resolv.conf", True))
        return found
