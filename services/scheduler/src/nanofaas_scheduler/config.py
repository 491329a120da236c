"""Scheduler settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _default_host() -> str:
    return "0.0.0.0" if os.environ.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9090
    metrics_port: int = 9190
    registry_address: str = "127.0.0.1:9091"
    backend: str = "local"
    callback_url: str = "http://127.0.0.1:8080"
    idempotency_ttl_s: float = 900.0
    execution_ttl_s: float = 900.0
    max_executions: int = 100_000
    shutdown_grace_s: float = 10.0
    max_per_second: float = 0.0
    max_pending_callbacks: int = 10_000

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            host=env.get("NANOFAAS_SCHEDULER_HOST", _default_host()),
            port=int(env.get("NANOFAAS_SCHEDULER_PORT", "9090")),
            metrics_port=int(env.get("NANOFAAS_SCHEDULER_METRICS_PORT", "9190")),
            registry_address=env.get("NANOFAAS_REGISTRY_ADDRESS", "127.0.0.1:9091"),
            backend=env.get("NANOFAAS_BACKEND", "local"),
            callback_url=env.get("NANOFAAS_CALLBACK_URL", "http://127.0.0.1:8080"),
            idempotency_ttl_s=float(env.get("NANOFAAS_IDEMPOTENCY_TTL_S", "900")),
            execution_ttl_s=float(env.get("NANOFAAS_EXECUTION_TTL_S", "900")),
            max_executions=int(env.get("NANOFAAS_MAX_EXECUTIONS", "100000")),
            shutdown_grace_s=float(env.get("NANOFAAS_SHUTDOWN_GRACE_S", "10")),
            max_per_second=float(env.get("NANOFAAS_MAX_PER_SECOND", "0")),
            max_pending_callbacks=int(env.get("NANOFAAS_MAX_PENDING_CALLBACKS", "10000")),
        )
