"""Container logs: one file per container run, in the CRI format, served by ``pods/{name}/log``.

Lines are written ``<RFC3339Nano> <stdout|stderr> F <text>`` as containerd does; readers strip
the prefix unless ``timestamps=true``. Followers are woken by the writer, no polling, and a
follow ends when that run of the container has exited and its output is drained.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import meta as m
from ..errors import bad_request

if TYPE_CHECKING:
    from ..cluster import FakeCluster


class LogFile:
    """One run's output: appended by the container's pipe readers, read by log requests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self.closed = False
        self._changed = asyncio.Condition()

    async def append(self, stream: str, line: bytes) -> None:
        stamp = m.micro_timestamp()
        text = line.rstrip(b"\n")
        with self.path.open("ab") as handle:
            handle.write(f"{stamp} {stream} F ".encode() + text + b"\n")
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        self.closed = True
        async with self._changed:
            self._changed.notify_all()

    async def wait(self) -> None:
        async with self._changed:
            await self._changed.wait()

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)


def _render(line: bytes, timestamps: bool) -> tuple[bytes, datetime.datetime | None]:
    stamp, _, rest = line.partition(b" ")
    _, _, rest = rest.partition(b" ")  # stream
    _, _, text = rest.partition(b" ")  # tag
    try:
        moment = m.parse_timestamp(stamp.decode())
    except ValueError:
        moment = None
    return (stamp + b" " + text if timestamps else text), moment


class ClusterLogs:
    """The API server's view of every kubelet's logs (implements ``server.LogSource``)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def stream_logs(
        self,
        pod: dict[str, Any],
        container: str | None,
        *,
        follow: bool,
        tail_lines: int | None,
        timestamps: bool,
        previous: bool,
        since_seconds: int | None,
        limit_bytes: int | None,
    ) -> AsyncIterator[bytes]:
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        if container is None:
            if len(spec.get("containers") or []) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(c['name'] for c in spec.get('containers') or [])}]"
                )
            container = spec["containers"][0]["name"]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        kubelet = self.cluster.kubelets.get(str(spec.get("nodeName")))
        runs = kubelet.log_files(pod["metadata"]["uid"], container) if kubelet is not None else []
        if previous:
            if len(runs) < 2:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            runs = runs[:-1]
        if not runs:
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: '
                f"{_waiting_reason(pod, container)}"
            )
        log = runs[-1]
        since = m.now() - datetime.timedelta(seconds=since_seconds) if since_seconds else None
        sent = 0
        lines = log.lines()
        offset = len(lines)
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        while True:
            for line in lines:
                text, moment = _render(line, timestamps)
                if since is not None and moment is not None and moment < since:
                    continue
                if limit_bytes is not None and sent + len(text) > limit_bytes:
                    yield text[: limit_bytes - sent]
                    return
                sent += len(text)
                yield text
            if not follow or (log.closed and len(log.lines()) == offset):
                return
            if len(log.lines()) == offset:
                await log.wait()
            fresh = log.lines()
            lines, offset = fresh[offset:], len(fresh)


def _waiting_reason(pod: dict[str, Any], container: str) -> str:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == container:
            waiting = (entry.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "ContainerCreating")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                return "trying and failing to pull image"
            return reason
    return "ContainerCreating"
