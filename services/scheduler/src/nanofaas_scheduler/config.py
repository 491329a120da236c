"""Scheduler settings, read once from the environment (documented in docs/architecture.md)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value the scheduler cannot use; str() names the variable."""


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


def _number_var(env: Mapping[str, str], name: str, default: float) -> float:
    """A finite, non-negative number in `name` (unset or blank: `default`)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name}: must be a number of at least 0 (got {raw!r})")
    return value


def _str_var(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


BACKENDS = ("local", "kubernetes")
IMAGE_PULL_POLICIES = ("IfNotPresent", "Always", "Never")


def _choice_var(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str_var(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)} (got {value!r})")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9090  # 0: any free port (the "scheduler listening" line tells which)
    metrics_port: int = 9190  # 0: no metrics endpoint
    registry_address: str = "127.0.0.1:9091"
    backend: str = "local"
    callback_url: str = "http://127.0.0.1:8080"
    idempotency_ttl_s: float = 900.0
    execution_ttl_s: float = 900.0
    max_executions: int = 100_000
    shutdown_grace_s: float = 10.0
    max_per_second: float = 0.0
    # As given (any case): logging_setup resolves it, falling back to INFO with a warning.
    log_level: str = "INFO"
    max_pending_callbacks: int = 10_000
    # The autoscaler of WARM replicas (docs/autoscaling.md): sampling period and KPA-style windows.
    autoscale_tick_s: float = 1.0
    autoscale_stable_window_s: float = 60.0
    autoscale_panic_window_s: float = 6.0
    autoscale_panic_threshold: float = 2.0
    # -- input limits (docs/limits.md) --
    max_output_bytes: int = 32 * 1024 * 1024
    max_payload_bytes: int = 10 * 1024 * 1024
    max_idempotency_key_bytes: int = 256
    max_metadata_entries: int = 64
    max_metadata_bytes: int = 16 * 1024
    # Outbound URLs (ENDPOINT functions' endpointUrl): CIDRs refused, and exceptions to them.
    outbound_deny: tuple[str, ...] = ()
    outbound_allow: tuple[str, ...] = ()
    # The kubernetes backend (docs/kubernetes.md); ignored by the others.
    k8s_namespace: str = ""  # blank: the pod's namespace, else the kubeconfig context's, else default
    k8s_pod_template: str = ""  # a file path; blank: no operator template
    k8s_image_pull_policy: str = "IfNotPresent"
    k8s_job_ttl_s: int = 300
    k8s_unschedulable_timeout_s: float = 30.0
    k8s_start_timeout_s: float = 60.0  # a pod not Ready this long after its creation has failed to start
    k8s_api_workers: int = 8
    k8s_adopt_grace_s: float = 30.0
    # Security (docs/security.md). The gRPC port listens on `host` (127.0.0.1: only the pod's
    # own containers); `external_host` ("" = none; in a pod its IP) is a second listener for
    # clients outside the pod and the kubelet's probes, always authenticated, on
    # `external_port` (0 = the same port as the first: a distinct address, no conflict).
    metrics_host: str = "127.0.0.1"
    external_host: str = ""
    external_port: int = 0
    api_tokens_file: str = ""  # "" = API authentication off
    open_methods: tuple[str, ...] = ("/grpc.health.v1.Health/",)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; raises ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        # In a pod, metrics are for Prometheus outside it; the gRPC API stays on localhost.
        default_metrics_host = "0.0.0.0" if env.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"
        settings = cls(
            host=_str_var(env, "NANOFAAS_SCHEDULER_HOST", "127.0.0.1"),
            port=_int_var(env, "NANOFAAS_SCHEDULER_PORT", 9090, 0, 65535),
            metrics_port=_int_var(env, "NANOFAAS_SCHEDULER_METRICS_PORT", 9190, 0, 65535),
            registry_address=_str_var(env, "NANOFAAS_REGISTRY_ADDRESS", "127.0.0.1:9091"),
            backend=_choice_var(env, "NANOFAAS_BACKEND", "local", BACKENDS),
            callback_url=_str_var(env, "NANOFAAS_CALLBACK_URL", "http://127.0.0.1:8080"),
            idempotency_ttl_s=_number_var(env, "NANOFAAS_IDEMPOTENCY_TTL_S", 900.0),
            execution_ttl_s=_number_var(env, "NANOFAAS_EXECUTION_TTL_S", 900.0),
            max_executions=_int_var(env, "NANOFAAS_MAX_EXECUTIONS", 100_000, 1, 2**31 - 1),
            shutdown_grace_s=_number_var(env, "NANOFAAS_SHUTDOWN_GRACE_S", 10.0),
            max_per_second=_number_var(env, "NANOFAAS_MAX_PER_SECOND", 0.0),
            log_level=_str_var(env, "LOG_LEVEL", "INFO"),
            max_pending_callbacks=_int_var(env, "NANOFAAS_MAX_PENDING_CALLBACKS", 10_000, 1, 2**31 - 1),
            autoscale_tick_s=_int_var(env, "NANOFAAS_AUTOSCALE_TICK_MS", 1000, 10, 60_000) / 1000,
            autoscale_stable_window_s=_int_var(
                env, "NANOFAAS_AUTOSCALE_STABLE_WINDOW_MS", 60_000, 0, 3_600_000
            )
            / 1000,
            autoscale_panic_window_s=_int_var(env, "NANOFAAS_AUTOSCALE_PANIC_WINDOW_MS", 6_000, 0, 3_600_000)
            / 1000,
            autoscale_panic_threshold=_number_var(env, "NANOFAAS_AUTOSCALE_PANIC_THRESHOLD", 2.0),
            # Outputs travel in one gRPC message of at most 64 MiB (server.py).
            max_output_bytes=_int_var(
                env, "NANOFAAS_MAX_OUTPUT_BYTES", 32 * 1024 * 1024, 1, 60 * 1024 * 1024
            ),
            max_payload_bytes=_int_var(env, "NANOFAAS_MAX_BODY_BYTES", 10 * 1024 * 1024, 1, 60 * 1024 * 1024),
            max_idempotency_key_bytes=_int_var(env, "NANOFAAS_MAX_IDEMPOTENCY_KEY_BYTES", 256, 1, 2**16),
            max_metadata_entries=_int_var(env, "NANOFAAS_MAX_METADATA_ENTRIES", 64, 0, 100_000),
            max_metadata_bytes=_int_var(env, "NANOFAAS_MAX_METADATA_BYTES", 16 * 1024, 0, 2**24),
            outbound_deny=_cidrs_var(env, "NANOFAAS_OUTBOUND_DENY_CIDRS"),
            outbound_allow=_cidrs_var(env, "NANOFAAS_OUTBOUND_ALLOW_CIDRS"),
            k8s_namespace=_str_var(env, "NANOFAAS_K8S_NAMESPACE", ""),
            k8s_pod_template=_str_var(env, "NANOFAAS_K8S_POD_TEMPLATE", ""),
            k8s_image_pull_policy=_choice_var(
                env, "NANOFAAS_K8S_IMAGE_PULL_POLICY", "IfNotPresent", IMAGE_PULL_POLICIES
            ),
            k8s_job_ttl_s=_int_var(env, "NANOFAAS_K8S_JOB_TTL_S", 300, 0, 86_400),
            k8s_unschedulable_timeout_s=_number_var(env, "NANOFAAS_K8S_UNSCHEDULABLE_TIMEOUT_S", 30.0),
            k8s_start_timeout_s=_number_var(env, "NANOFAAS_K8S_START_TIMEOUT_S", 60.0),
            k8s_api_workers=_int_var(env, "NANOFAAS_K8S_API_WORKERS", 8, 1, 256),
            k8s_adopt_grace_s=_number_var(env, "NANOFAAS_K8S_ADOPT_GRACE_S", 30.0),
            metrics_host=_str_var(env, "NANOFAAS_SCHEDULER_METRICS_HOST", default_metrics_host),
            external_host=_str_var(env, "NANOFAAS_SCHEDULER_EXTERNAL_HOST", ""),
            external_port=_int_var(env, "NANOFAAS_SCHEDULER_EXTERNAL_PORT", 0, 0, 65535),
            api_tokens_file=_str_var(env, "NANOFAAS_API_TOKENS_FILE", ""),
            open_methods=_list_var(env, "NANOFAAS_AUTH_OPEN_METHODS", ("/grpc.health.v1.Health/",)),
        )
        if settings.api_tokens_file:
            _check_tokens_file(settings.api_tokens_file)
        if settings.backend == "kubernetes" and settings.k8s_pod_template:
            _check_pod_template(settings.k8s_pod_template)
        return settings


def _list_var(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset = `default`, set but blank = empty."""
    if name not in env:
        return default
    return tuple(item.strip() for item in env[name].split(",") if item.strip())


def _check_tokens_file(path: str) -> None:
    """A tokens file that cannot be read, or holds no token, stops the scheduler before it serves."""
    from nanofaas_scheduler.api_auth import TokenFile, TokenFileError

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


def _check_pod_template(path: str) -> None:
    """The operator's pod template must load and have the right shape before anything starts."""
    from nanofaas_scheduler.dispatch.kubernetes.template import TemplateError, load_template

    try:
        load_template(path)
    except TemplateError as exc:
        raise ConfigError(f"NANOFAAS_K8S_POD_TEMPLATE: {exc}") from exc
