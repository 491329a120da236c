"""What process runs a function on this machine, and with which environment."""

from __future__ import annotations

import os
import shlex
import sys

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.base import Invocation

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


def uses_project_runtime(spec: types_pb2.FunctionSpec) -> bool:
    """True when the function runs the project's Python runtime (no command of the user's)."""
    return not spec.command and not spec.runtime_command and is_runtime_image(spec.image)


def argv_for(spec: types_pb2.FunctionSpec) -> list[str]:
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
        # The project's runtime, on the interpreter the platform itself runs on.
        return [sys.executable, "-m", "nanofaas_runtime"]
    raise UnrunnableFunction(
        f"image {spec.image!r} cannot run on the local backend: set command or runtimeCommand, "
        f"or use {RUNTIME_IMAGE}"
    )


def _platform_environment() -> dict[str, str]:
    """What every function process inherits: basics, plus the OpenTelemetry settings so
    runtimes export to the same place (but under their own service name)."""
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(
        (key, value)
        for key, value in os.environ.items()
        if key.startswith("OTEL_") and key != "OTEL_SERVICE_NAME"
    )
    return env


def environment_for(invocation: Invocation, *, one_shot: bool) -> dict[str, str]:
    """The platform's variables win over the spec's, so a spec cannot fake them."""
    spec = invocation.spec
    env = _platform_environment()
    env.update(spec.env)
    env["FUNCTION_NAME"] = spec.name
    env["TRACE_ID"] = invocation.execution.caller_trace_id or invocation.execution.trace_id
    env["INVOCATION_TIMEOUT_MS"] = str(spec.timeout_ms)
    env["NANOFAAS_RUNTIME_MODE"] = _MODE_NAMES.get(spec.runtime_mode, "http")
    if one_shot:
        env["EXECUTION_ID"] = invocation.execution.id
        if traceparent := invocation.traceparent or invocation.execution.traceparent:
            env["TRACEPARENT"] = traceparent
    return env


def replica_environment(spec: types_pb2.FunctionSpec) -> dict[str, str]:
    """A warm replica serves many executions, so it gets no per-execution variables."""
    env = _platform_environment()
    env.update(spec.env)
    env["FUNCTION_NAME"] = spec.name
    env["INVOCATION_TIMEOUT_MS"] = str(spec.timeout_ms)
    env["NANOFAAS_RUNTIME_MODE"] = "http"
    return env
