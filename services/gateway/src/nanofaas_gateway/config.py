"""Gateway settings, read from the environment (documented in docs/architecture.md)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Input limits (docs/limits.md).
DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_HEADER_COUNT = 100
DEFAULT_MAX_IDEMPOTENCY_KEY_BYTES = 256
DEFAULT_MAX_METADATA_ENTRIES = 64
DEFAULT_MAX_METADATA_BYTES = 16 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value the gateway cannot use; str() names the variable."""


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


def _number_var(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    """A finite number of at least `minimum` in `name` (unset or blank: `default`)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if not (math.isfinite(value) and value >= minimum):
        raise ConfigError(f"{name}: must be a number of at least {minimum:g} (got {raw!r})")
    return value


def _str_var(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _list_var(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset = `default`, set but blank = empty."""
    if name not in env:
        return default
    return tuple(item.strip() for item in env[name].split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway needs to run; tests build it directly."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (the "gateway listening" line tells which)
    metrics_port: int = 8081
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    scheduler_address: str = "127.0.0.1:9090"
    registry_address: str = "127.0.0.1:9091"
    # As given (any case): logging_setup resolves it, falling back to INFO with a warning.
    log_level: str = "INFO"
    # Deadline of registry CRUD calls and of Enqueue/GetExecution/CompleteExecution.
    rpc_timeout_s: float = 30.0
    # Added to the invocation timeout for the sync Invoke gRPC deadline: the scheduler
    # enforces the real timeout, the deadline only stops the gateway waiting forever.
    invoke_deadline_margin_s: float = 10.0
    # The wait of a sync invocation without X-Timeout-Ms (plus the margin): a backstop
    # against a scheduler that never answers, not a limit; the scheduler ends an
    # invocation at its function's timeout, which the registry bounds (300 s today).
    max_invoke_wait_s: float = 3600.0
    # Completion callbacks: deliveries made at once, and how long a stopping gateway
    # lets them finish (the rest are offered again to the next gateway).
    max_concurrent_callbacks: int = 64
    callback_grace_s: float = 5.0
    # How long /readyz waits for each backend service's health answer.
    readiness_timeout_s: float = 1.0
    # How long a SIGTERM waits for in-flight requests before cancelling them.
    shutdown_grace_s: float = 30.0
    # API authentication (docs/security.md): the bearer tokens file ("" = off) and the
    # paths anyone may reach even when it is on.
    api_tokens_file: str = ""
    open_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics")
    # -- input limits (docs/limits.md) --
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT
    header_read_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0  # a keep-alive connection with no request is closed after it
    max_connections: int = 0  # 0: the open-file limit less a reserve
    max_idempotency_key_bytes: int = DEFAULT_MAX_IDEMPOTENCY_KEY_BYTES
    max_metadata_entries: int = DEFAULT_MAX_METADATA_ENTRIES
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    # Outbound URLs (X-Callback-Url): CIDRs refused, and CIDRs allowed despite that list.
    outbound_deny: tuple[str, ...] = ()
    outbound_allow: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; raises ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        default_host = "0.0.0.0" if env.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"
        settings = cls(
            host=_str_var(env, "NANOFAAS_GATEWAY_HOST", default_host),
            port=_int_var(env, "NANOFAAS_GATEWAY_PORT", 8080, 0, 65535),
            metrics_port=_int_var(env, "NANOFAAS_GATEWAY_METRICS_PORT", 8081, 0, 65535),
            max_body_bytes=_int_var(env, "NANOFAAS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1, 2**31 - 1),
            scheduler_address=_str_var(env, "NANOFAAS_SCHEDULER_ADDRESS", "127.0.0.1:9090"),
            registry_address=_str_var(env, "NANOFAAS_REGISTRY_ADDRESS", "127.0.0.1:9091"),
            log_level=_str_var(env, "LOG_LEVEL", "INFO"),
            max_url_bytes=_int_var(env, "NANOFAAS_MAX_URL_BYTES", DEFAULT_MAX_URL_BYTES, 256, 2**20),
            max_header_bytes=_int_var(
                env, "NANOFAAS_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, 1024, 2**24
            ),
            max_header_count=_int_var(env, "NANOFAAS_MAX_HEADER_COUNT", DEFAULT_MAX_HEADER_COUNT, 8, 10_000),
            header_read_timeout_s=_number_var(env, "NANOFAAS_HEADER_READ_TIMEOUT_S", 10.0, 0.1),
            idle_timeout_s=_number_var(env, "NANOFAAS_IDLE_TIMEOUT_S", 5.0, 0.1),
            max_connections=_int_var(env, "NANOFAAS_MAX_CONNECTIONS", 0, 0, 1_000_000),
            max_idempotency_key_bytes=_int_var(
                env, "NANOFAAS_MAX_IDEMPOTENCY_KEY_BYTES", DEFAULT_MAX_IDEMPOTENCY_KEY_BYTES, 1, 2**16
            ),
            max_metadata_entries=_int_var(
                env, "NANOFAAS_MAX_METADATA_ENTRIES", DEFAULT_MAX_METADATA_ENTRIES, 0, 100_000
            ),
            max_metadata_bytes=_int_var(
                env, "NANOFAAS_MAX_METADATA_BYTES", DEFAULT_MAX_METADATA_BYTES, 0, 2**24
            ),
            outbound_deny=_cidrs_var(env, "NANOFAAS_OUTBOUND_DENY_CIDRS"),
            outbound_allow=_cidrs_var(env, "NANOFAAS_OUTBOUND_ALLOW_CIDRS"),
            api_tokens_file=_str_var(env, "NANOFAAS_API_TOKENS_FILE", ""),
            open_paths=_list_var(env, "NANOFAAS_AUTH_OPEN_PATHS", ("/healthz", "/readyz", "/metrics")),
        )
        if settings.api_tokens_file:
            _check_tokens_file(settings.api_tokens_file)
        return settings


def _check_tokens_file(path: str) -> None:
    """A tokens file that cannot be read, or holds no token, stops the gateway before it serves."""
    from nanofaas_gateway.api_auth import TokenFile, TokenFileError

    try:
        TokenFile(path)
    except TokenFileError as exc:
        raise ConfigError(f"NANOFAAS_API_TOKENS_FILE: {exc}") from exc


def _cidrs_var(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of CIDRs (addresses alone are /32 or /128), each checked here."""
    items = tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a CIDR (e.g. 169.254.0.0/16)") from None
    return items
