"""Helpers of the container suite: hardened containers, plain HTTP, bounded waits, metrics.

Every container runs as a numeric non-root user with a read-only root file system and a
tmpfs /tmp, and in a network namespace that reaches nothing but this machine's loopback: the
host's (`network_mode="host"`) or another container's (`container:<id>`). Nothing here ever
talks to a bridge address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Absent in the lint environment, typed where installed.
from testcontainers.core.container import DockerContainer  # type: ignore[import-not-found, unused-ignore]

from scripts.images.catalog import IMAGES, ImageSpec

USER = "10001:10001"
TMPFS_OPTIONS = "size=64m"
IMAGE_TAG = os.environ.get("NANOFAAS_IMAGE_TAG", "dev")
# Every container of this run carries RUN_LABEL=RUN_ID, so the run removes its own leftovers
# and never another run's.
RUN_LABEL = "org.nanofaas.test.run"
RUN_ID = uuid.uuid4().hex


def image(short_name: str) -> ImageSpec:
    """The catalog entry of `nanofaas/<short_name>`."""
    [spec] = [spec for spec in IMAGES if spec.repository == f"nanofaas/{short_name}"]
    return spec


def image_ref(short_name: str) -> str:
    return image(short_name).ref(IMAGE_TAG)


PROBE_FUNCTION = Path(__file__).resolve().parent / "functions" / "probe"


def probe_function_dir(parent: Path) -> Path:
    """A copy of the probe handler that UID 10001 can read once mounted (pytest's tmp is 0700)."""
    directory = parent / "function"
    shutil.copytree(PROBE_FUNCTION, directory, ignore=shutil.ignore_patterns("__pycache__"))
    directory.chmod(0o755)
    (directory / "handler.py").chmod(0o644)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hardened(
    ref: str,
    network_mode: str,
    *,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path, str] | None = None,
    entrypoint: list[str] | None = None,
    user: str = USER,
) -> DockerContainer:
    """A container as the pod runs it: --read-only, tmpfs /tmp, USER 10001, no new privileges."""
    container = DockerContainer(ref).with_tmpfs_mount("/tmp", TMPFS_OPTIONS)
    for key, value in (env or {}).items():
        container.with_env(key, value)
    for host_path, container_path in (volumes or {}).items():
        container.with_volume_mapping(host_path, container_path, "ro")
    extra: dict[str, Any] = {}
    if entrypoint is not None:
        extra["entrypoint"] = entrypoint
    return container.with_kwargs(
        network_mode=network_mode,
        read_only=True,
        user=user,
        security_opt=["no-new-privileges"],
        labels={RUN_LABEL: RUN_ID},
        **extra,
    )


def logs_of(container: DockerContainer) -> str:
    """stdout and stderr of a container, for a failure message."""
    try:
        out, err = container.get_logs()
    except Exception as exc:  # the container may be gone already
        return f"(no logs: {exc})"
    return (bytes(out) + bytes(err)).decode(errors="replace")[-6000:]


def exit_code(container: DockerContainer) -> int | None:
    """The exit code once the container has stopped, None while it runs."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    if str(wrapped.status) in ("created", "running", "restarting"):
        return None
    return int(wrapped.attrs["State"]["ExitCode"])


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: Any = None, *, timeout: float = 10.0, raw: bytes | None = None
) -> Reply:
    """One HTTP exchange with a JSON body (or `raw` bytes sent as one); statuses are returned, not raised."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 60.0, alive: Callable[[], None] | None = None
) -> None:
    """Poll `condition` until true; `alive` raises when a watched container died meanwhile.

    Polling is the only way here: a process in another container offers no event to await.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def answers(url: str, status: int = 200) -> Callable[[], bool]:
    """A condition: GET `url` answers with `status` (connection errors count as no)."""

    def check() -> bool:
        try:
            return http("GET", url, timeout=5).status == status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


# A label value may hold braces (route="/v1/functions/{name}:invoke"): quoted strings are skipped whole.
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample `name{labels...}` in a Prometheus text page, or None."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        found = dict(_LABEL.findall(match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return None
