"""Pure builders of the Job, Deployment and Service of a function (no client, no I/O).

Golden tests pin their output and validate every object against the
Kubernetes OpenAPI schema (kubernetes-validate, strict). The function's pod
is the same in both modes: its image, command, env, resources and probes,
serving the function HTTP protocol on port 8080 of the pod IP. What differs:
a Job pod serves one attempt (NANOFAAS_SINGLE_USE=1, restartPolicy Never);
a Deployment's pods serve many, behind a liveness probe.
"""

from __future__ import annotations

import copy
import math
import shlex
from dataclasses import dataclass, field

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.template import FUNCTION_CONTAINER, JsonObject, merge_pod
from nanofaas_scheduler.policies.autoscale import bounds_of

PORT = 8080
PORT_NAME = "http"
RUNTIME_IMAGE = "nanofaas/python-runtime"
WATCHDOG = "nanofaas-watchdog"
RUNTIME = "nanofaas-runtime"
POD_UID_ENV = "NANOFAAS_POD_UID"  # the pod's uid (downward API), which the runtime checks requests against
_MODE_NAMES = {
    types_pb2.RUNTIME_MODE_HTTP: "http",
    types_pb2.RUNTIME_MODE_STDIO: "stdio",
    types_pb2.RUNTIME_MODE_FILE: "file",
}
_DEADLINE_GRACE_S = 5
# A Job pod is deleted once its attempt has ended (answered, failed or timed out): nothing is
# left to finish gracefully, so it stops quickly (the template may say otherwise).
_JOB_STOP_GRACE_S = 2
# Below the operator's template: what a function pod needs no API access or service links for.
_POD_DEFAULTS: JsonObject = {
    "metadata": {},
    "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False},
}


class UnrunnableFunction(Exception):
    """The spec names nothing a pod can run; retrying cannot help."""


@dataclass(frozen=True, slots=True)
class PodOptions:
    """What the operator configured for every function pod (NANOFAAS_K8S_* settings)."""

    namespace: str = "default"
    callback_url: str = ""
    image_pull_policy: str = "IfNotPresent"
    job_ttl_s: int = 300
    template: JsonObject = field(default_factory=dict)


def is_one_shot(spec: types_pb2.FunctionSpec) -> bool:
    return spec.runtime_mode in (types_pb2.RUNTIME_MODE_STDIO, types_pb2.RUNTIME_MODE_FILE)


def _is_runtime_image(image: str) -> bool:
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return repository == RUNTIME_IMAGE or repository.endswith("/" + RUNTIME_IMAGE)


def container_command(spec: types_pb2.FunctionSpec) -> list[str]:
    """The container's `command`: [] keeps the image's entrypoint (the runtime's, for HTTP).

    STDIO and FILE functions run their command under the watchdog, which any
    image built FROM nanofaas/python-runtime has on its PATH.
    """
    argv = list(spec.command)
    if not argv and spec.runtime_command:
        try:
            argv = shlex.split(spec.runtime_command)
        except ValueError as exc:
            raise UnrunnableFunction(f"runtimeCommand: {exc}") from exc
    if not is_one_shot(spec):
        return argv
    if not argv:
        if not _is_runtime_image(spec.image):
            raise UnrunnableFunction(
                f"a {_MODE_NAMES[spec.runtime_mode].upper()} function needs command or runtimeCommand "
                f"(image {spec.image!r} is not {RUNTIME_IMAGE})"
            )
        argv = [RUNTIME]
    return [WATCHDOG, "--mode", _MODE_NAMES[spec.runtime_mode], "--", *argv]


def _env(values: dict[str, str]) -> list[JsonObject]:
    return [{"name": name, "value": value} for name, value in values.items()]


def function_env(spec: types_pb2.FunctionSpec, options: PodOptions) -> list[JsonObject]:
    """The spec's env, then the platform's variables (set last, so a spec cannot fake them)."""
    platform = {
        "FUNCTION_NAME": spec.name,
        "INVOCATION_TIMEOUT_MS": str(spec.timeout_ms),
        "NANOFAAS_RUNTIME_MODE": _MODE_NAMES.get(spec.runtime_mode, "http"),
        "PORT": str(PORT),
    }
    if options.callback_url:
        platform["CALLBACK_URL"] = options.callback_url
    from_pod = {
        # Listen on the pod IP (what probes and the scheduler connect to).
        "HOST": "status.podIP",
        # Who this pod is: a request meant for another pod (a reused IP) is refused.
        POD_UID_ENV: "metadata.uid",
    }
    own = {k: v for k, v in sorted(spec.env.items()) if k not in platform and k not in from_pod}
    fields = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in from_pod.items()]
    return [*_env(own), *_env(platform), *fields]


def _resources(spec: types_pb2.FunctionSpec) -> JsonObject:
    """Requests = limits unless the spec's requests differ (Guaranteed QoS when both equal and set)."""
    resources = spec.resources
    limits = {key: value for key, value in (("cpu", resources.cpu), ("memory", resources.memory)) if value}
    requests = dict(limits)
    for key, value in (("cpu", resources.request_cpu), ("memory", resources.request_memory)):
        if value:
            requests[key] = value
    built: JsonObject = {}
    if requests:
        built["requests"] = requests
    if limits:
        built["limits"] = limits
    return built


def secret_volume_name(index: int) -> str:
    """The volume of the spec's index-th Secret mounted as files (a DNS-1123 label)."""
    return f"nanofaas-secret-{index}"


def _secret_env(spec: types_pb2.FunctionSpec) -> list[JsonObject]:
    """Env Secrets as envFrom: the kubelet reads them; only their names pass through the platform."""
    return [{"secretRef": {"name": secret.name}} for secret in spec.secrets if not secret.mount_path]


def _secret_files(spec: types_pb2.FunctionSpec) -> tuple[list[JsonObject], list[JsonObject]]:
    """(volumes, volumeMounts) of the Secrets mounted as files, read-only."""
    volumes: list[JsonObject] = []
    mounts: list[JsonObject] = []
    for index, secret in enumerate(spec.secrets):
        if secret.mount_path:
            name = secret_volume_name(index)
            volumes.append({"name": name, "secret": {"secretName": secret.name}})
            mounts.append({"name": name, "mountPath": secret.mount_path, "readOnly": True})
    return volumes, mounts


def _tolerations(spec: types_pb2.FunctionSpec) -> list[JsonObject]:
    built: list[JsonObject] = []
    for toleration in spec.tolerations:
        item: JsonObject = {
            key: getattr(toleration, key)
            for key in ("key", "operator", "value", "effect")
            if getattr(toleration, key)
        }
        if toleration.HasField("toleration_seconds"):
            item["tolerationSeconds"] = toleration.toleration_seconds
        built.append(item)
    return built


def _scheduling(spec: types_pb2.FunctionSpec) -> JsonObject:
    """The function's own pod-level fields: nodeSelector, tolerations, serviceAccountName, Secret volumes.

    Merged over the operator's template: nodeSelector entries are added (the function's value
    wins for the same key), tolerations and volumes are added to the template's.
    """
    own: JsonObject = {}
    if spec.node_selector:
        own["nodeSelector"] = dict(sorted(spec.node_selector.items()))
    tolerations = _tolerations(spec)
    if tolerations:
        own["tolerations"] = tolerations
    if spec.service_account_name:
        own["serviceAccountName"] = spec.service_account_name
    volumes, _ = _secret_files(spec)
    if volumes:
        own["volumes"] = volumes
    return own


def _readiness() -> JsonObject:
    # Probed every second with a 1 s timeout: a fresh pod is used within a second of serving.
    return {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 1,
    }


def _liveness() -> JsonObject:
    return {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def function_container(
    spec: types_pb2.FunctionSpec, options: PodOptions, extra_env: dict[str, str]
) -> JsonObject:
    container: JsonObject = {
        "name": FUNCTION_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy or options.image_pull_policy,
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "env": [*function_env(spec, options), *_env(extra_env)],
        "readinessProbe": _readiness(),
    }
    command = container_command(spec)
    if command:
        container["command"] = command
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    env_from = _secret_env(spec)
    if env_from:
        container["envFrom"] = env_from
    _, mounts = _secret_files(spec)
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _pod(
    spec: types_pb2.FunctionSpec,
    options: PodOptions,
    labels: dict[str, str],
    annotations: dict[str, str],
    own_spec: JsonObject,
    *,
    defaults: JsonObject | None = None,
) -> JsonObject:
    base = copy.deepcopy(defaults or _POD_DEFAULTS)
    if spec.service_account_name:
        # A function given its own service account is given its token too (unless the template says not).
        base["spec"].pop("automountServiceAccountToken", None)
    own = {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {**_scheduling(spec), **own_spec},
    }
    return merge_pod(base, options.template, own)


def job_labels(attempt: Attempt) -> dict[str, str]:
    return {
        **naming.common_labels(attempt.function_name, naming.COMPONENT_JOB),
        naming.EXECUTION_LABEL: naming.label_value(attempt.execution_id),
        naming.ATTEMPT_LABEL: str(attempt.number),
    }


def build_job(attempt: Attempt, options: PodOptions) -> JsonObject:
    """One attempt: a Job Kubernetes never retries (the scheduler does) and that ends by its deadline."""
    spec = attempt.spec
    labels = job_labels(attempt)
    annotations = {naming.FUNCTION_ANNOTATION: attempt.function_name}
    if attempt.trace_id:
        annotations[naming.TRACE_ANNOTATION] = attempt.trace_id
    if attempt.idempotency_key:
        annotations[naming.IDEMPOTENCY_ANNOTATION] = attempt.idempotency_key
    identity = {
        "EXECUTION_ID": attempt.execution_id,
        "NANOFAAS_ATTEMPT": str(attempt.number),
        "TRACE_ID": attempt.trace_id,
        "NANOFAAS_SINGLE_USE": "1",
    }
    if attempt.traceparent:
        identity["TRACEPARENT"] = attempt.traceparent
    pod = _pod(
        spec,
        options,
        labels,
        {naming.FUNCTION_ANNOTATION: attempt.function_name},
        {"restartPolicy": "Never", "containers": [function_container(spec, options, identity)]},
        defaults={
            **_POD_DEFAULTS,
            "spec": {**_POD_DEFAULTS["spec"], "terminationGracePeriodSeconds": _JOB_STOP_GRACE_S},
        },
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(attempt.function_name, attempt.execution_id, attempt.number),
            "namespace": options.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "backoffLimit": 0,
            # A backstop: the scheduler deletes the Job at the deadline itself.
            "activeDeadlineSeconds": max(1, math.ceil(attempt.timeout)) + _DEADLINE_GRACE_S,
            "ttlSecondsAfterFinished": options.job_ttl_s,
            "template": pod,
        },
    }


def warm_labels(function: str) -> dict[str, str]:
    return naming.common_labels(function, naming.COMPONENT_WARM)


def _warm_selector(function: str) -> dict[str, str]:
    labels = warm_labels(function)
    return {key: labels[key] for key in (naming.MANAGED_BY, naming.COMPONENT, naming.FUNCTION_LABEL)}


def pod_concurrency(spec: types_pb2.FunctionSpec) -> int:
    """How many invocations one WARM pod takes at once.

    At least the replica's targetInFlight, and enough that maxReplicas pods carry the
    function's whole concurrency (which the scheduler never exceeds across pods).
    """
    bounds = bounds_of(spec)
    return max(bounds.target_in_flight, math.ceil(max(1, spec.concurrency) / bounds.max_replicas))


def build_deployment(spec: types_pb2.FunctionSpec, options: PodOptions, replicas: int) -> JsonObject:
    """`replicas` is what the autoscaler wants now (it patches /scale afterwards)."""
    name = naming.function_object_name(spec.name)
    labels = warm_labels(spec.name)
    annotations = {naming.FUNCTION_ANNOTATION: spec.name, naming.REVISION_ANNOTATION: str(spec.revision)}
    container = function_container(
        spec, options, {"NANOFAAS_RUNTIME_CONCURRENCY": str(pod_concurrency(spec))}
    )
    container["livenessProbe"] = _liveness()
    pod = _pod(spec, options, labels, annotations, {"restartPolicy": "Always", "containers": [container]})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": options.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": _warm_selector(spec.name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": pod,
        },
    }


def build_service(spec: types_pb2.FunctionSpec, options: PodOptions) -> JsonObject:
    """The Service exists for its EndpointSlices (and for humans); the scheduler dispatches to pod IPs."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": naming.function_object_name(spec.name),
            "namespace": options.namespace,
            "labels": warm_labels(spec.name),
            "annotations": {naming.FUNCTION_ANNOTATION: spec.name},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": _warm_selector(spec.name),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
