"""Start a container's process inside its pod (pod-network mode), as a container runtime would.

Run by the kubelet as ``python -m fakekube.kubelet.enter SPEC -- ARGV...``, this process joins
the pod's network namespace, makes itself a private mount namespace, mounts the pod's volumes,
service-account token and ``/etc/hosts`` where the container spec says, optionally remounts
``/`` read-only (``readOnlyRootFilesystem``), then ``exec``s the container's command — so the
kubelet's pid, process group, pipes and signals are the command's own. Nothing it mounts is
visible outside; it all goes when the process ends.

A mount point that does not exist on the host (``/etc/nanofaas``, ``/var/run/secrets/...``) is
made on an overlay of its nearest existing ancestor, whose upper layer is a tmpfs: the host's
file system is never written. The process's own files are the host's (it has no image): those
a volume would hide (a venv under an ``emptyDir`` at ``/tmp``) are bound back at their places inside
it (``imagefs.py``). ``SPEC`` is JSON: ``netns`` (path), ``scratch`` (an empty directory
for the overlays), ``mounts`` (``[source, target, read_only]``), ``readOnlyRoot``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import imagefs, netns

if TYPE_CHECKING:
    from .volumes import PodVolumes


def sandboxed(
    argv: list[str], container: Mapping[str, Any], netns_path: str, volumes: PodVolumes, sandbox: Path
) -> list[str]:
    """``argv`` run by this module in the pod's namespaces with the container's mounts."""
    scratch = sandbox / f"scratch-{container.get('name')}-{secrets.token_hex(4)}"
    scratch.mkdir(parents=True)
    spec = {
        "netns": netns_path,
        "scratch": str(scratch),
        "mounts": volumes.mounts(container),
        "readOnlyRoot": bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem")),
    }
    return [sys.executable, "-m", "fakekube.kubelet.enter", json.dumps(spec), "--", *argv]


def _overlay_ancestor(target: Path, scratch: Path, overlaid: list[Path]) -> None:
    """Make ``target`` creatable: overlay its nearest existing ancestor unless already writable."""
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if any(ancestor == done or done in ancestor.parents for done in overlaid):
        return
    layer = scratch / str(len(overlaid))
    (layer / "upper").mkdir(parents=True)
    (layer / "work").mkdir()
    netns.mount(
        "overlay",
        str(ancestor),
        "overlay",
        0,
        f"lowerdir={ancestor},upperdir={layer / 'upper'},workdir={layer / 'work'}",
    )
    overlaid.append(ancestor)


def _mount_point(
    target: Path,
    *,
    directory: bool,
    volumes: dict[Path, Path],
    above: list[Path],
    scratch: Path,
    overlaid: list[Path],
) -> None:
    """Make ``target`` exist where it will be mounted on: in the volume mounted above it, if any.

    As a container runtime does, a mount point inside another volume is made in that volume's
    own directory (the per-pod one); one elsewhere that the host lacks, on an overlay.
    """
    outer = imagefs.deepest_ancestor(target, above)
    if outer is not None and outer in volumes:
        place = volumes[outer] / target.relative_to(outer)
    elif os.path.lexists(target):
        return
    else:
        _overlay_ancestor(target, scratch, overlaid)
        place = target
    if directory:
        place.mkdir(parents=True, exist_ok=True)
    else:
        place.parent.mkdir(parents=True, exist_ok=True)
        place.touch()


def prepare(spec: dict[str, Any], command: list[str]) -> None:
    netns.setns(str(spec["netns"]))
    netns.unshare(netns.CLONE_NEWNS)
    netns.mount(None, "/", None, netns.MS_REC | netns.MS_PRIVATE)
    mounts = [
        (Path(source), Path(os.path.realpath(target)), bool(read_only))
        for source, target, read_only in spec.get("mounts") or ()
    ]
    # Sources are opened first: a mount on /tmp would hide sources that live under it.
    sources = [os.open(source, os.O_PATH | os.O_CLOEXEC) for source, _, _ in mounts]
    scratch = Path(spec["scratch"])
    netns.mount("tmpfs", str(scratch), "tmpfs", 0, "size=16m,mode=0755")
    read_only_root = bool(spec.get("readOnlyRoot"))
    volumes = {target: source for source, target, _ in mounts}
    images = imagefs.hidden(imagefs.image_paths(command, os.environ, scratch.parent), volumes)
    overlaid: list[Path] = []
    for target, directory in [(t, s.is_dir()) for s, t, _ in mounts] + [(i, True) for i in images]:
        _mount_point(
            target,
            directory=directory,
            volumes=volumes,
            above=[*volumes, *images],
            scratch=scratch,
            overlaid=overlaid,
        )
    # The image's paths are opened once their mount points exist (maybe on an overlay), and bound
    # back, after the volume above each, read-only as the rest of the image when the root is.
    binds = [(fd, target, read_only) for fd, (_, target, read_only) in zip(sources, mounts, strict=True)]
    binds += [(os.open(image, os.O_PATH | os.O_CLOEXEC), image, read_only_root) for image in images]
    for fd, target, read_only in sorted(binds, key=lambda bind: bind[1].parts):
        netns.mount(f"/proc/self/fd/{fd}", str(target), None, netns.MS_BIND | netns.MS_REC)
        if read_only:
            netns.mount(None, str(target), None, netns.MS_BIND | netns.MS_REMOUNT | netns.MS_RDONLY)
        os.close(fd)
    if read_only_root:
        netns.mount(None, "/", None, netns.MS_BIND | netns.MS_REMOUNT | netns.MS_RDONLY)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m fakekube.kubelet.enter SPEC -- ARGV...", file=sys.stderr)
        return 128
    command = argv[3:]
    try:
        prepare(json.loads(argv[1]), command)
        os.execvpe(command[0], command, dict(os.environ))
    except OSError as error:
        # What a container runtime reports as StartError (the kubelet sees exit 128).
        print(f"fakekube: cannot start {command[0]!r}: {error}", file=sys.stderr, flush=True)
    return 128


if __name__ == "__main__":
    sys.exit(main(sys.argv))
