"""The docker command line, run without a shell, every call bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

QUERY_TIMEOUT_S = 30.0


class EngineError(RuntimeError):
    """A docker command failed; the message carries its output."""


def docker(
    *args: str, timeout: float = QUERY_TIMEOUT_S, log: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; its output goes to `log` when given (kept for a failed build)."""
    command = ["docker", *args]
    try:
        if log is None:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        else:
            with log.open("w") as out:
                result = subprocess.run(
                    command, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False
                )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`docker {args[0]}` did not finish within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        detail = log.read_text(errors="replace")[-4000:] if log else (result.stderr or result.stdout)
        raise EngineError(f"`docker {args[0]}` failed (exit {result.returncode}):\n{detail.strip()}")
    return result


def engine_problem() -> str | None:
    """Why no container engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        result = docker("version", "--format", "{{.Server.Version}}", check=False)
    except EngineError as exc:
        return str(exc)
    if result.returncode != 0 or not result.stdout.strip():
        return f"no docker engine answers: {(result.stderr or result.stdout).strip()}"
    return None


def running_in_ci() -> bool:
    """CI sets CI=true; there a missing engine is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).returncode == 0


def image_label(ref: str, label: str) -> str | None:
    """A label of a local image, or None when the image or the label is missing."""
    result = docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref, check=False
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value not in ("", "<no value>") else None


def image_size(ref: str) -> int:
    """The image's unpacked size in bytes, as `docker images` shows it."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def build(
    context: Path,
    ref: str,
    *,
    log: Path,
    timeout: float,
    dockerfile: Path | None = None,
    build_args: Sequence[str] = (),
    network: str | None = None,
) -> None:
    """`docker build` (the classic builder or BuildKit: the Dockerfiles need neither's extras).

    `network="none"` gives the RUN steps no network at all, which proves a build offline.
    """
    # --force-rm: a failed step's container is removed too, so a failed build leaves nothing.
    arguments = ["build", "--force-rm", "--tag", ref]
    if dockerfile is not None:
        arguments += ["--file", str(dockerfile)]
    if network is not None:
        arguments += ["--network", network]
    for build_arg in build_args:
        arguments += ["--build-arg", build_arg]
    try:
        docker(*arguments, str(context), timeout=timeout, log=log)
    except EngineError as exc:
        raise EngineError(f"{ref}: {exc}\n(full log: {log})") from exc


def inspect(kind: str, ref: str) -> dict[str, Any]:
    """`docker KIND inspect REF` as a dict (KIND: image, container)."""
    [found] = json.loads(docker(kind, "inspect", ref).stdout)
    if not isinstance(found, dict):
        raise EngineError(f"unexpected `docker {kind} inspect` output for {ref}")
    return found
