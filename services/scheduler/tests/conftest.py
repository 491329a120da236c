from __future__ import annotations

from typing import Any

from nanofaas.v1 import types_pb2


def make_spec(name: str = "fn", **overrides: Any) -> types_pb2.FunctionSpec:
    """A spec with the registry's defaults applied, as the scheduler receives it."""
    fields: dict[str, object] = {
        "name": name,
        "image": "nanofaas/python-runtime:latest",
        "timeout_ms": 30_000,
        "concurrency": 4,
        "queue_size": 100,
        "max_retries": 3,
        "execution_mode": types_pb2.EXECUTION_MODE_JOB,
        "runtime_mode": types_pb2.RUNTIME_MODE_HTTP,
        "revision": 1,
    }
    fields.update(overrides)
    return types_pb2.FunctionSpec(**fields)  # type: ignore[arg-type]
