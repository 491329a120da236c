"""Containers in a real engine (docker), in pod-network mode: the images a test names run as such.

What dockershim did: per pod a *pause* container with no network of its own (``--network
none``), whose network namespace the pod network then wires (``ip netns attach``, a veth, the
pod IP), and every container of the pod started with ``--network container:<pause>`` — so they
share the pod's IP and localhost. Each container is a foreground ``docker run`` whose pipes,
exit code and signals (the CLI proxies SIGTERM) are the kubelet's to watch, with the
container's security context (``--user``, ``--read-only``, ``--cap-drop``,
``no-new-privileges``), the pod's volumes and token as bind mounts, and its environment passed
by name (``-e KEY``: values never on a command line). Images are never pulled: one missing
locally fails to pull. Every container carries the cluster's label, so whatever is left is
removed by label (a pod's when it ends, the cluster's when it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from .env import expand
from .volumes import Mount

CLUSTER_LABEL = "org.fakekube.cluster"
POD_LABEL = "org.fakekube.pod"


class EngineError(RuntimeError):
    """A docker command failed."""


async def _docker(*args: str, timeout: float = 60) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            "docker",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as error:
        raise EngineError(f"docker {args[0]}: {error}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise EngineError(f"docker {args[0]}: no answer in {timeout:g}s") from None
    if process.returncode != 0:
        raise EngineError(f"docker {args[0]}: {err.decode(errors='replace').strip()}")
    return out.decode()


def image_present(ref: str) -> bool:
    """Whether the engine has ``ref`` locally (blocking; a missing engine counts as no)."""
    try:
        done = subprocess.run(
            ["docker", "image", "inspect", ref], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class Engine:
    """The docker side of one cluster: its pause containers, runs and clean-up."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.docker = shutil.which("docker") or "docker"
        self.used = False  # a pause container was started: there may be something to remove

    def container_name(self, pod_uid: str, container: str, run: int) -> str:
        return f"fakekube-{self.cluster_id}-{pod_uid[:8]}-{container}-{run}"

    async def remove_container(self, name: str) -> None:
        """A run's container, if the CLI died before it did (SIGKILL after the grace period)."""
        with contextlib.suppress(EngineError):
            await _docker("rm", "--force", name)

    def _labels(self, pod_uid: str) -> list[str]:
        return ["--label", f"{CLUSTER_LABEL}={self.cluster_id}", "--label", f"{POD_LABEL}={pod_uid}"]

    def pause_name(self, pod_uid: str) -> str:
        return f"fakekube-{self.cluster_id}-{pod_uid[:8]}-pause"

    async def start_pause(self, pod_uid: str, image: str) -> int:
        """Start the pod's pause container (from one of its images); returns its pid."""
        name = self.pause_name(pod_uid)
        self.used = True
        await _docker(
            "run",
            "--detach",
            "--rm",
            "--name",
            name,
            "--network",
            "none",
            "--user",
            "65535:65535",
            "--read-only",
            "--cap-drop",
            "ALL",
            *self._labels(pod_uid),
            "--entrypoint",
            "sleep",
            image,
            "infinity",
        )
        state = json.loads(await _docker("inspect", "--format", "{{json .State}}", name))
        return int(state["Pid"])

    def run_argv(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        env: Mapping[str, str],
        mounts: list[Mount],
        run: int,
    ) -> list[str]:
        """``docker run`` (foreground) of ``container`` in the pod's pause container's network."""
        uid = str(pod["metadata"]["uid"])
        pod_security = (pod.get("spec") or {}).get("securityContext") or {}
        security = {**pod_security, **(container.get("securityContext") or {})}
        argv = [self.docker, "run", "--rm", "--name", self.container_name(uid, str(container["name"]), run)]
        argv += ["--network", f"container:{self.pause_name(uid)}", *self._labels(uid)]
        if security.get("runAsUser") is not None:
            group = security.get("runAsGroup", security["runAsUser"])
            argv += ["--user", f"{security['runAsUser']}:{group}"]
        if security.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        for capability in (security.get("capabilities") or {}).get("drop") or ():
            argv += ["--cap-drop", str(capability)]
        for source, target, read_only in mounts:
            argv += ["--volume", f"{source}:{target}{':ro' if read_only else ''}"]
        for key in env:
            argv += ["--env", key]
        if container.get("workingDir"):
            argv += ["--workdir", str(container["workingDir"])]
        command = [expand(str(part), env) for part in container.get("command") or ()]
        args = [expand(str(part), env) for part in container.get("args") or ()]
        if command:
            argv += ["--entrypoint", command[0], str(container["image"]), *command[1:], *args]
        else:
            argv += [str(container["image"]), *args]
        return argv

    async def remove_pod(self, pod_uid: str) -> None:
        """Remove every container of the pod, its pause container last (its netns goes with it)."""
        await self._remove(f"{POD_LABEL}={pod_uid}")

    async def remove_all(self) -> None:
        await self._remove(f"{CLUSTER_LABEL}={self.cluster_id}")

    def remove_all_blocking(self) -> None:
        """The last resort of a cluster whose loop is gone: remove its containers from here."""
        label = f"label={CLUSTER_LABEL}={self.cluster_id}"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            listed = subprocess.run(
                [self.docker, "ps", "--all", "--quiet", "--filter", label],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.split()
            if listed:
                subprocess.run(
                    [self.docker, "rm", "--force", *listed], capture_output=True, timeout=60, check=False
                )

    async def _remove(self, label: str) -> None:
        with contextlib.suppress(EngineError):
            listed = (await _docker("ps", "--all", "--quiet", "--filter", f"label={label}")).split()
            if listed:
                await _docker("rm", "--force", *listed)
