"""The argv that starts a container inside its pod's sandbox (pod-network mode): see :mod:`.enter`."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .volumes import PodVolumes


def read_only_root(container: Mapping[str, Any]) -> bool:
    return bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))


def sandboxed(
    argv: list[str], container: Mapping[str, Any], netns: str, volumes: PodVolumes, sandbox: Path
) -> list[str]:
    """``argv`` run by :mod:`fakekube.kubelet.enter` in the pod's namespaces with its mounts."""
    scratch = sandbox / f"scratch-{container.get('name')}-{secrets.token_hex(4)}"
    scratch.mkdir(parents=True)
    spec = {
        "netns": netns,
        "scratch": str(scratch),
        "mounts": volumes.mounts(container),
        "readOnlyRoot": read_only_root(container),
    }
    return [sys.executable, "-m", "fakekube.kubelet.enter", json.dumps(spec), "--", *argv]
