"""Settings of the registry process, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 9091
DEFAULT_METRICS_PORT = 9191
LOCAL_HOST = "127.0.0.1"
POD_HOST = "0.0.0.0"
# Where function specs live: `memory` forgets them on exit (tests), `sqlite` keeps them in a
# file under the data directory (`make up`), `kubernetes` in Function objects (the cluster).
STORE_KINDS = ("memory", "sqlite", "kubernetes")
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_STORE = "memory"


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
    store: str = DEFAULT_STORE
    # The sqlite store's directory (see default_data_dir); unused by the memory store.
    data_dir: Path = field(default_factory=lambda: default_data_dir({}))
    # The kubernetes store's namespace, and whether to use the pod's service account (else the
    # kubeconfig: $KUBECONFIG or ~/.kube/config).
    namespace: str = "default"
    in_cluster: bool = False
    # Security (docs/security.md): gRPC on `host` (127.0.0.1: only the pod's own containers);
    # `external_host` ("" = none; in a pod its IP) a second, always authenticated listener on
    # `external_port` (0 = the same port as the first: a distinct address, no conflict).
    metrics_host: str = LOCAL_HOST
    external_host: str = ""
    external_port: int = 0
    api_tokens_file: str = ""  # "" = API authentication off
    open_methods: tuple[str, ...] = ("/grpc.health.v1.Health/",)
    # Size limits of a FunctionSpec (docs/limits.md); validation.SizeLimits.
    max_spec_bytes: int = 1024 * 1024
    max_env_bytes: int = 256 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrySettings:
        """Builds the settings; inside a pod only metrics listen on 0.0.0.0 (for Prometheus)."""
        source = os.environ if env is None else env
        default_metrics_host = POD_HOST if source.get("KUBERNETES_SERVICE_HOST") else LOCAL_HOST
        settings = cls(
            host=source.get("NANOFAAS_REGISTRY_HOST", "").strip() or LOCAL_HOST,
            port=_int_var(source, "NANOFAAS_REGISTRY_PORT", DEFAULT_PORT, 0, 65535),
            metrics_port=_int_var(source, "NANOFAAS_REGISTRY_METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535),
            log_level=source.get("LOG_LEVEL", "").strip() or "INFO",
            store=_store_var(source),
            data_dir=default_data_dir(source),
            namespace=source.get("NANOFAAS_NAMESPACE", "").strip() or _pod_namespace(),
            in_cluster=bool(source.get("KUBERNETES_SERVICE_HOST")),
            metrics_host=source.get("NANOFAAS_REGISTRY_METRICS_HOST", "").strip() or default_metrics_host,
            external_host=source.get("NANOFAAS_REGISTRY_EXTERNAL_HOST", "").strip(),
            external_port=_int_var(source, "NANOFAAS_REGISTRY_EXTERNAL_PORT", 0, 0, 65535),
            api_tokens_file=source.get("NANOFAAS_API_TOKENS_FILE", "").strip(),
            open_methods=_list_var(source, "NANOFAAS_AUTH_OPEN_METHODS", ("/grpc.health.v1.Health/",)),
            # At most 16 MiB: a spec travels whole in one gRPC message (server.py's limit).
            max_spec_bytes=_int_var(source, "NANOFAAS_MAX_SPEC_BYTES", 1024 * 1024, 1024, 16 * 1024 * 1024),
            max_env_bytes=_int_var(source, "NANOFAAS_MAX_ENV_BYTES", 256 * 1024, 0, 16 * 1024 * 1024),
        )
        if settings.api_tokens_file:
            _check_tokens_file(settings.api_tokens_file)
        return settings


def _list_var(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset = `default`, set but blank = empty."""
    if name not in env:
        return default
    return tuple(item.strip() for item in env[name].split(",") if item.strip())


def _check_tokens_file(path: str) -> None:
    """A tokens file that cannot be read, or holds no token, stops the registry before it serves."""
    from nanofaas_registry.api_auth import TokenFile, TokenFileError

    try:
        TokenFile(path)
    except TokenFileError as exc:
        raise ConfigError(f"NANOFAAS_API_TOKENS_FILE: {exc}") from exc


def _pod_namespace() -> str:
    """The pod's own namespace (from its service account), else `default`."""
    try:
        return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """NANOFAAS_DATA_DIR, else $XDG_DATA_HOME/nanofaas, else ~/.local/share/nanofaas.

    The XDG base-directory layout keeps durable state out of the working tree and the cache.
    """
    explicit = env.get("NANOFAAS_DATA_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_DATA_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():  # the spec says a relative XDG_DATA_HOME is to be ignored
        return Path(xdg) / "nanofaas"
    return Path.home() / ".local" / "share" / "nanofaas"


def _store_var(env: Mapping[str, str]) -> str:
    raw = env.get("NANOFAAS_REGISTRY_STORE", "").strip()
    if not raw:
        return DEFAULT_STORE
    if raw.lower() not in STORE_KINDS:
        raise ConfigError(f"NANOFAAS_REGISTRY_STORE: must be one of {', '.join(STORE_KINDS)} (got {raw!r})")
    return raw.lower()


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
