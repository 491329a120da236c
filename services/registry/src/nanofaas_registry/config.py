"""Settings of the registry process, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 9091
DEFAULT_METRICS_PORT = 9191
LOCAL_HOST = "127.0.0.1"
POD_HOST = "0.0.0.0"


class ConfigError(ValueError):
    """An environment variable holds a value the registry cannot use."""


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Where the registry listens; a metrics_port of 0 disables the metrics endpoint."""

    host: str = LOCAL_HOST
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    log_level: str = "INFO"
    # Seconds in-flight RPCs get to finish on shutdown before they are cancelled.
    shutdown_grace_s: float = 5.0
    # Events a watcher may fall behind before it is disconnected.
    watch_queue_capacity: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrySettings:
        """Builds the settings; inside a pod the default host is 0.0.0.0 so the Service can reach us."""
        source = os.environ if env is None else env
        default_host = POD_HOST if source.get("KUBERNETES_SERVICE_HOST") else LOCAL_HOST
        return cls(
            host=source.get("NANOFAAS_REGISTRY_HOST") or default_host,
            port=_port(source, "NANOFAAS_REGISTRY_PORT", DEFAULT_PORT),
            metrics_port=_port(source, "NANOFAAS_REGISTRY_METRICS_PORT", DEFAULT_METRICS_PORT),
            log_level=(source.get("LOG_LEVEL") or "INFO").upper(),
        )


def _port(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}: must be an integer port, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key}: must be between 0 and 65535, got {value}")
    return value
