"""What process runs a function on this machine, and with which environment.

The scheduler starts the function side, it never imports it: the project's
Python runtime and the watchdog are commands like any other (by default run
on the scheduler's own interpreter, where `make up` installs them; override
with NANOFAAS_RUNTIME_COMMAND / NANOFAAS_WATCHDOG_COMMAND). STDIO and FILE
functions run under the watchdog, which speaks the function HTTP protocol and
runs their command once per invocation — the same path a Kubernetes pod takes.
"""

from __future__ import annotations

import os
import shlex
import sys

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.base import Attempt

RUNTIME_IMAGE = "nanofaas/python-runtime"
_MODE_NAMES = {
    types_pb2.RUNTIME_MODE_HTTP: "http",
    types_pb2.RUNTIME_MODE_STDIO: "stdio",
    types_pb2.RUNTIME_MODE_FILE: "file",
}
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class UnrunnableFunction(Exception):
    """The spec names nothing this backend can start; retrying cannot help."""


def is_runtime_image(image: str) -> bool:
    """True for any tag or digest of nanofaas/python-runtime, under any registry host."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return repository == RUNTIME_IMAGE or repository.endswith("/" + RUNTIME_IMAGE)


def is_one_shot(spec: types_pb2.FunctionSpec) -> bool:
    """STDIO and FILE: the function's command runs once per invocation, under the watchdog."""
    return spec.runtime_mode in (types_pb2.RUNTIME_MODE_STDIO, types_pb2.RUNTIME_MODE_FILE)


def uses_project_runtime(spec: types_pb2.FunctionSpec) -> bool:
    """True when the function runs the project's Python runtime (no command of the user's)."""
    return not spec.command and not spec.runtime_command and is_runtime_image(spec.image)


def hands_over_socket(spec: types_pb2.FunctionSpec) -> bool:
    """The project's own servers (runtime, watchdog) take a pre-bound Unix socket; others get PORT."""
    return is_one_shot(spec) or uses_project_runtime(spec)


def _configured(variable: str, module: str) -> list[str]:
    value = os.environ.get(variable, "").strip()
    return shlex.split(value) if value else [sys.executable, "-m", module]


def runtime_command() -> list[str]:
    return _configured("NANOFAAS_RUNTIME_COMMAND", "nanofaas_runtime")


def watchdog_command() -> list[str]:
    return _configured("NANOFAAS_WATCHDOG_COMMAND", "nanofaas_runtime.watchdog")


def function_argv(spec: types_pb2.FunctionSpec) -> list[str]:
    """The function's own command: command, runtimeCommand, or the project's runtime."""
    if spec.command:
        return list(spec.command)
    if spec.runtime_command:
        try:
            argv = shlex.split(spec.runtime_command)
        except ValueError as exc:
            raise UnrunnableFunction(f"runtimeCommand: {exc}") from exc
        if argv:
            return argv
    if is_runtime_image(spec.image):
        return runtime_command()
    raise UnrunnableFunction(
        f"image {spec.image!r} cannot run on the local backend: set command or runtimeCommand, "
        f"or use {RUNTIME_IMAGE}"
    )


def argv_for(spec: types_pb2.FunctionSpec) -> list[str]:
    """The server process to start: the function itself (HTTP) or the watchdog around it."""
    argv = function_argv(spec)
    if is_one_shot(spec):
        return [*watchdog_command(), "--mode", _MODE_NAMES[spec.runtime_mode], "--", *argv]
    return argv


def replica_environment(spec: types_pb2.FunctionSpec, callback_url: str = "") -> dict[str, str]:
    """What every process of the function gets; per-invocation values travel in the request.

    Basics, the OpenTelemetry settings (so runtimes export to the same place
    under their own service name), then the spec's env; the platform's own
    variables are set last, so a spec cannot fake them.
    """
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(
        (key, value)
        for key, value in os.environ.items()
        if key.startswith("OTEL_") and key != "OTEL_SERVICE_NAME"
    )
    env.update(spec.env)
    env["FUNCTION_NAME"] = spec.name
    env["INVOCATION_TIMEOUT_MS"] = str(spec.timeout_ms)
    env["NANOFAAS_RUNTIME_MODE"] = _MODE_NAMES.get(spec.runtime_mode, "http")
    if callback_url:
        # Where a runtime that reports by callback (job mode) reaches the platform.
        env["CALLBACK_URL"] = callback_url
    return env


def invocation_environment(attempt: Attempt) -> dict[str, str]:
    """The attempt's identity, as a process started (or forked) for it sees it."""
    env = {
        "EXECUTION_ID": attempt.execution_id,
        "NANOFAAS_ATTEMPT": str(attempt.number),
        "TRACE_ID": attempt.trace_id,
    }
    if attempt.traceparent:
        env["TRACEPARENT"] = attempt.traceparent
    return env


def job_environment(attempt: Attempt, callback_url: str = "") -> dict[str, str]:
    """A process started for exactly one attempt also gets that attempt's identity."""
    return {**replica_environment(attempt.spec, callback_url), **invocation_environment(attempt)}
