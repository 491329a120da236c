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
    """An environment variable holds a value the registry cannot use; str() names the variable."""


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Where the registry listens; a metrics_port of 0 disables the metrics endpoint."""

    host: str = LOCAL_HOST
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # As given (any case): logging_setup resolves it, falling back to INFO with a warning.
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
            host=source.get("NANOFAAS_REGISTRY_HOST", "").strip() or default_host,
            port=_int_var(source, "NANOFAAS_REGISTRY_PORT", DEFAULT_PORT, 0, 65535),
            metrics_port=_int_var(source, "NANOFAAS_REGISTRY_METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535),
            log_level=source.get("LOG_LEVEL", "").strip() or "INFO",
        )


def _int_var(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """The integer in `name` (unset or blank: `default`); the error text is the same in every service."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}: must be an integer between {minimum} and {maximum} (got {raw!r})")
    return value
