"""A process container's "image": the host paths it runs from (pod-network mode).

A process image has no file system of its own: its interpreter, virtualenv, import path and
program files are the host's. A volume mounted over a parent directory of one of them (the
control plane's ``emptyDir`` at ``/tmp``, over a fresh clone and its virtualenv under ``/tmp``)
would hide them, where a real container's volume only hides the image's own ``/tmp``. So
``enter.py`` binds each such path back at its own place inside the volume: the process still
starts, and everything else under the mount point is the volume's.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path


def image_paths(command: list[str], environ: Mapping[str, str], sandbox: Path) -> list[Path]:
    """The directories ``command`` runs from, as seen by this interpreter (the kubelet's own).

    The interpreter's prefixes and import path (with the container's ``PYTHONPATH``), the
    command's executable (and its virtualenv), the directories of absolute paths among its
    arguments (the program's files) and the working directory — never the pod's sandbox, which
    holds the volumes themselves.
    """
    found: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]
    executable = shutil.which(command[0], path=environ.get("PATH")) if command else None
    if executable is not None:
        found += [os.path.dirname(executable), os.path.dirname(os.path.realpath(executable))]
        venv = Path(executable).parent.parent
        if (venv / "pyvenv.cfg").is_file():
            found.append(str(venv))
    found += [arg for arg in command[1:] if os.path.isabs(arg)]
    found.append(os.getcwd())
    paths: set[Path] = set()
    for entry in found:
        if not entry:
            continue
        path = Path(os.path.realpath(entry))
        if path.is_file():  # a program file, a zip on the import path: its directory
            path = path.parent
        if path.is_dir() and path != sandbox and sandbox not in path.parents:
            paths.add(path)
    return sorted(paths)


def deepest_ancestor(path: Path, among: Iterable[Path]) -> Path | None:
    """The deepest of ``among`` strictly above ``path``, or None."""
    above = [candidate for candidate in among if candidate in path.parents]
    return max(above, key=lambda candidate: len(candidate.parts), default=None)


def hidden(paths: Iterable[Path], targets: Collection[Path]) -> list[Path]:
    """The ``paths`` that mounts at ``targets`` would hide, each once (not under another such path).

    A path is hidden when the nearest mount point or image path above it is a mount point; one
    that is itself a mount point is the volume's, as the pod asked.
    """
    paths = [path for path in paths if path not in targets]
    return [
        path
        for path in paths
        if (above := deepest_ancestor(path, [*targets, *paths])) is not None and above in targets
    ]
