"""Per-kind create/update rules: defaulting, admission checks and immutable fields.

These mirror the API server's REST strategies and the admission plugins a cluster runs by default
(NamespaceLifecycle, ServiceAccount), for the kinds the controllers and the backend touch. What is
not listed gets only the generic metadata rules. Defaults are applied before schema validation,
as the real server does, so what clients read back looks like what a real cluster returns.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from . import meta as m
from .errors import ApiError, forbidden, invalid
from .resources import SERVICE_ACCOUNT_KEY, ResourceType
from .selectors import selector_from_object

Exists = Callable[[tuple[str, str], str, str], bool]
Causes = list[tuple[str, str, str]]


class Strategy:
    """The generic rules: metadata name and labels; subclasses add a kind's own."""

    name_rule: Callable[[str], list[str]] = staticmethod(m.dns1123_subdomain_errors)

    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        """Defaults and admission for a new object (raise :class:`ApiError` to refuse)."""

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        """Keep server-owned fields, refuse changes to immutable ones."""

    def validate(self, resource: ResourceType, obj: Mapping[str, Any]) -> Causes:
        metadata = obj.get("metadata") or {}
        causes: Causes = []
        name = str(metadata.get("name") or "")
        for error in self.name_rule(name):
            causes.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {error}'))
        causes += m.label_causes(metadata.get("labels"), "metadata.labels")
        return causes


def _default_probe(probe: dict[str, Any] | None) -> None:
    if not probe:
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        probe.setdefault(key, value)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")
        probe["httpGet"].setdefault("path", "/")


def _default_container(container: dict[str, Any]) -> None:
    image = str(container.get("image") or "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or ():
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or ():
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        _default_probe(container.get(probe))


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Pod spec defaults (``SetDefaults_PodSpec`` and friends), for pods and pod templates."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in itertools.chain(spec.get("initContainers") or (), spec.get("containers") or ()):
        _default_container(container)


def _pod_template_causes(spec: Mapping[str, Any], field: str) -> Causes:
    causes: Causes = []
    names: set[str] = set()
    for i, container in enumerate(
        itertools.chain(spec.get("initContainers") or (), spec.get("containers") or ())
    ):
        name = str(container.get("name") or "")
        for error in m.dns1123_label_errors(name):
            causes.append(
                (f"{field}.containers[{i}].name", "FieldValueInvalid", f'Invalid value: "{name}": {error}')
            )
        if name in names:
            causes.append(
                (f"{field}.containers[{i}].name", "FieldValueDuplicate", f'Duplicate value: "{name}"')
            )
        names.add(name)
        if not container.get("image"):
            causes.append((f"{field}.containers[{i}].image", "FieldValueRequired", "Required value"))
    if not spec.get("containers"):
        causes.append((f"{field}.containers", "FieldValueRequired", "Required value"))
    return causes


class PodStrategy(Strategy):
    # Pod spec fields a running pod may change (``ValidatePodUpdate``).
    _MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")

    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        namespace = m.meta(obj).get("namespace", "")
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = account
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        if not exists(SERVICE_ACCOUNT_KEY, namespace, account):
            raise forbidden(
                "pods",
                "",
                str(m.meta(obj).get("name") or m.meta(obj).get("generateName") or ""),
                f"error looking up service account {namespace}/{account}: "
                f'serviceaccount "{account}" not found',
            )
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", _qos_class(spec))

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        new_spec, old_spec = copy.deepcopy(new.get("spec") or {}), copy.deepcopy(old.get("spec") or {})
        for spec in (new_spec, old_spec):
            for key in self._MUTABLE:
                spec.pop(key, None)
            for container in itertools.chain(spec.get("initContainers") or (), spec.get("containers") or ()):
                container.pop("image", None)
            # The scheduler binds by setting nodeName once.
        if not old_spec.get("nodeName"):
            new_spec.pop("nodeName", None)
            old_spec.pop("nodeName", None)
        if new_spec != old_spec:
            raise invalid(
                "Pod",
                "",
                m.meta(new).get("name", ""),
                [
                    (
                        "spec",
                        "FieldValueForbidden",
                        "Forbidden: pod updates may not change fields other than "
                        "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                        "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                        "tolerations) or `spec.terminationGracePeriodSeconds`",
                    )
                ],
            )

    def validate(self, resource: ResourceType, obj: Mapping[str, Any]) -> Causes:
        return super().validate(resource, obj) + _pod_template_causes(obj.get("spec") or {}, "spec")


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = list(spec.get("containers") or ())
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k)
        and (r.get("requests") or r.get("limits") or {}).get(k) == (r.get("limits") or {}).get(k)
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _template_selector_causes(obj: Mapping[str, Any], kind: str) -> Causes:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    causes = m.label_causes(labels, "spec.template.metadata.labels")
    if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(
            ("spec.selector", "FieldValueInvalid", f"Invalid value: empty selector is invalid for {kind}")
        )
    elif selector is not None and not selector_from_object(selector).matches(labels):
        causes.append(
            (
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {labels}: `selector` does not match template `labels`",
            )
        )
    return causes + _pod_template_causes((spec.get("template") or {}).get("spec") or {}, "spec.template.spec")


def _immutable(kind: str, group: str, new: Mapping[str, Any], old: Mapping[str, Any], field: str) -> None:
    current: Any = new
    previous: Any = old
    for part in field.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
        previous = previous.get(part) if isinstance(previous, Mapping) else None
    if current != previous:
        raise invalid(
            kind,
            group,
            m.meta(new).get("name", ""),
            [(field, "FieldValueInvalid", f"Invalid value: {current}: field is immutable")],
        )


class DeploymentStrategy(Strategy):
    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if resource.kind == "Deployment":
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        default_pod_spec((spec.setdefault("template", {})).setdefault("spec", {}))

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        self.prepare_create(resource, new, lambda *_: True)
        _immutable(resource.kind, resource.group, new, old, "spec.selector")

    def validate(self, resource: ResourceType, obj: Mapping[str, Any]) -> Causes:
        causes = super().validate(resource, obj) + _template_selector_causes(obj, resource.kind)
        replicas = (obj.get("spec") or {}).get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            causes.append(
                (
                    "spec.replicas",
                    "FieldValueInvalid",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            )
        return causes


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class JobStrategy(Strategy):
    name_rule = staticmethod(m.dns1123_label_errors)

    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        spec = obj.setdefault("spec", {})
        metadata = m.meta(obj)
        template = spec.setdefault("template", {})
        labels = m.meta(template).setdefault("labels", {})
        if not spec.get("manualSelector"):
            uid, name = metadata["uid"], metadata.get("name", "")
            spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
            labels.update({JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name})
            metadata.setdefault("labels", {}).update(
                {JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name}
            )
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        default_pod_spec(template.setdefault("spec", {}))

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        for field in ("spec.selector", "spec.template", "spec.completions", "spec.completionMode"):
            _immutable("Job", "batch", new, old, field)

    def validate(self, resource: ResourceType, obj: Mapping[str, Any]) -> Causes:
        causes = super().validate(resource, obj) + _template_selector_causes(obj, "Job")
        spec = obj.get("spec") or {}
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(
                (
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )
        for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "parallelism"):
            value = spec.get(field)
            if isinstance(value, int) and value < (1 if field == "activeDeadlineSeconds" else 0):
                causes.append(
                    (
                        f"spec.{field}",
                        "FieldValueInvalid",
                        f"Invalid value: {value}: must be "
                        f"greater than or equal to {1 if field == 'activeDeadlineSeconds' else 0}",
                    )
                )
        return causes


class ServiceStrategy(Strategy):
    name_rule = staticmethod(m.dns1035_label_errors)
    _ips = itertools.count(10)
    _node_ports = itertools.count(30000)

    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] != "ExternalName":
            if not spec.get("clusterIP"):
                spec["clusterIP"] = str(ipaddress.IPv4Address("10.96.0.0") + next(self._ips))
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        for port in spec.get("ports") or ():
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
                port["nodePort"] = next(self._node_ports)
        obj.setdefault("status", {"loadBalancer": {}})

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        for key in ("clusterIP", "clusterIPs"):
            if key not in spec and key in old_spec:
                spec[key] = copy.deepcopy(old_spec[key])
        if spec.get("clusterIP") != old_spec.get("clusterIP"):
            raise invalid(
                "Service",
                "",
                m.meta(new).get("name", ""),
                [
                    (
                        "spec.clusterIPs[0]",
                        "FieldValueInvalid",
                        f'Invalid value: []string{{"{spec.get("clusterIP")}"}}: may not change once set',
                    )
                ],
            )
        self.prepare_create(resource, new, lambda *_: True)


class SecretStrategy(Strategy):
    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        if resource.kind == "Secret":
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None) or {}
            data = obj.setdefault("data", {}) if string_data else obj.get("data")
            for key, value in string_data.items():
                if data is not None:
                    data[key] = base64.b64encode(str(value).encode()).decode()

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        self.prepare_create(resource, new, lambda *_: True)
        if old.get("immutable"):
            for field in ("data", "binaryData", "immutable"):
                if new.get(field) != old.get(field):
                    raise invalid(
                        resource.kind,
                        "",
                        m.meta(new).get("name", ""),
                        [
                            (
                                field,
                                "FieldValueForbidden",
                                "Forbidden: field is immutable when `immutable` is set",
                            )
                        ],
                    )


class NamespaceStrategy(Strategy):
    name_rule = staticmethod(m.dns1123_label_errors)

    def prepare_create(self, resource: ResourceType, obj: dict[str, Any], exists: Exists) -> None:
        name = m.meta(obj).get("name", "")
        m.meta(obj).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")

    def prepare_update(self, resource: ResourceType, new: dict[str, Any], old: Mapping[str, Any]) -> None:
        m.meta(new).setdefault("labels", {})["kubernetes.io/metadata.name"] = m.meta(new).get("name", "")
        new.setdefault("spec", copy.deepcopy(old.get("spec") or {}))


STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "pods"): PodStrategy(),
    ("apps", "deployments"): DeploymentStrategy(),
    ("apps", "replicasets"): DeploymentStrategy(),
    ("batch", "jobs"): JobStrategy(),
    ("", "services"): ServiceStrategy(),
    ("", "secrets"): SecretStrategy(),
    ("", "configmaps"): SecretStrategy(),
    ("", "namespaces"): NamespaceStrategy(),
}
GENERIC = Strategy()


def strategy_for(resource: ResourceType) -> Strategy:
    return STRATEGIES.get(resource.key, GENERIC)


def check_namespace(
    namespace: str, phase_of: Callable[[str], str | None], resource: ResourceType, name: str
) -> None:
    """NamespaceLifecycle admission: the namespace must exist and not be terminating."""
    phase = phase_of(namespace)
    if phase is None:
        raise ApiError(
            404,
            "NotFound",
            f'namespaces "{namespace}" not found',
            details={"name": namespace, "kind": "namespaces"},
        )
    if phase == "Terminating":
        raise forbidden(
            resource.plural,
            resource.group,
            name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )
