"""One container of one pod: pull, start, probe, exit, restart, as the kubelet drives it.

Each run is a local process in its own session (process group), so stopping a container stops
everything it spawned. Output goes through pipes into a :class:`LogFile`. The state recorded here
becomes the container's ``containerStatuses`` entry: ``waiting`` (ContainerCreating,
ErrImagePull, ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError), ``running``, or
``terminated`` with the exit code and a reason (Completed, Error, OOMKilled, StartError).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import meta as m
from ..config import Image
from .logs import LogFile
from .network import Dial
from .probes import Prober

Notify = Callable[[], Awaitable[None]]


class Container:
    """A container's spec, its runs so far and its current state."""

    def __init__(self, spec: dict[str, Any], log_dir: Path, *, init: bool) -> None:
        self.spec = spec
        self.name = str(spec["name"])
        self.init = init
        self.log_dir = log_dir
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.ready = False
        self.started = False
        self.container_id: str | None = None
        self.image_id = ""
        self.runs: list[LogFile] = []
        self.process: asyncio.subprocess.Process | None = None
        self.oom = False
        self.stopping = False  # the kubelet is killing it (deletion, failed liveness): no OOM reason
        self._readers: list[asyncio.Task[None]] = []

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            found["containerID"] = self.container_id
        return found

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.state.get("terminated")
        return found

    def wait(self, reason: str, message: str | None = None) -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = self.started = False

    # -- processes -------------------------------------------------------------------------------
    async def start(self, argv: list[str], env: dict[str, str], cwd: Path, image_name: str) -> str | None:
        """Start a run; returns an error message (the run is then terminated StartError) or None."""
        self.image_id = (
            f"docker.io/library/{image_name}@sha256:{hashlib.sha256(image_name.encode()).hexdigest()}"
        )
        self.container_id = f"containerd://{secrets.token_hex(32)}"
        log = LogFile(self.log_dir / self.name / f"{len(self.runs)}.log")
        self.runs.append(log)
        self.oom = self.stopping = False
        try:
            if not argv:
                raise FileNotFoundError("no command specified")
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            await log.close()
            now = m.timestamp()
            message = (
                f"failed to create containerd task: failed to create shim task: OCI runtime create "
                f"failed: exec: {argv[0] if argv else ''!r}: {error}"
            )
            self.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": now,
                    "finishedAt": now,
                    "containerID": self.container_id,
                }
            }
            self.process = None
            return message
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self.process.stdout, "stdout", log)),
            asyncio.create_task(self._pump(self.process.stderr, "stderr", log)),
        ]
        self.state = {"running": {"startedAt": m.timestamp()}}
        return None

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, name: str, log: LogFile) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: take what is there
                line = await stream.read(65536)
            if not line:
                return
            await log.append(name, line)

    async def wait_exit(self) -> int:
        """Wait for the run to end; everything left in its process group is killed then."""
        process = self.process
        assert process is not None
        code = await process.wait()
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 5)
        for reader in self._readers:
            reader.cancel()
        await self.runs[-1].close()
        exit_code = 128 - code if code < 0 else code
        started = (self.state.get("running") or {}).get("startedAt") or m.timestamp()
        reason = "OOMKilled" if self.oom else ("Completed" if exit_code == 0 else "Error")
        self.state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": m.timestamp(),
                "containerID": self.container_id,
            }
        }
        self.ready = False
        self.process = None
        return exit_code

    def signal_group(self, sig: signal.Signals) -> None:
        process = self.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds, as container runtimes do."""
        if self.process is None:
            return
        self.stopping = True
        self.signal_group(signal.SIGTERM)
        process = self.process
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), max(grace, 0.0))
        except TimeoutError:
            self.signal_group(signal.SIGKILL)

    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.returncode is None else None


class ProbeSet:
    """The startup, liveness and readiness probers of one running container."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(
        self,
        container: Container,
        pod_ip: str,
        env: dict[str, str],
        *,
        on_ready: Callable[[bool], Awaitable[None]],
        on_dead: Callable[[str], Awaitable[None]],
        dial: Dial | None = None,
    ) -> None:
        spec = container.spec
        startup, liveness, readiness = (
            spec.get("startupProbe"),
            spec.get("livenessProbe"),
            spec.get("readinessProbe"),
        )
        started = asyncio.Event()

        async def startup_changed(ok: bool, message: str) -> None:
            if ok:
                container.started = True
                started.set()
                if readiness is None:
                    await on_ready(True)
            else:
                await on_dead(f"Startup probe failed: {message}")

        async def live_changed(ok: bool, message: str) -> None:
            if not ok:
                await on_dead(f"Liveness probe failed: {message}")

        async def ready_changed(ok: bool, _: str) -> None:
            await on_ready(ok)

        async def after_startup(prober: Prober) -> None:
            await started.wait()
            await prober.run()

        if startup is not None:
            self.tasks.append(
                asyncio.create_task(
                    Prober(startup, spec, pod_ip, env, startup_changed, initial=False, dial=dial).run()
                )
            )
        else:
            container.started = True
            started.set()
        if liveness is not None:
            self.tasks.append(
                asyncio.create_task(
                    after_startup(Prober(liveness, spec, pod_ip, env, live_changed, initial=True, dial=dial))
                )
            )
        if readiness is not None:
            self.tasks.append(
                asyncio.create_task(
                    after_startup(
                        Prober(readiness, spec, pod_ip, env, ready_changed, initial=False, dial=dial)
                    )
                )
            )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


def choose_image(images: dict[str, Image], unpullable: set[str], name: str) -> Image | None:
    """The local stand-in for ``name``: None means the pull fails."""
    if name in unpullable:
        return None
    return images.get(name)
