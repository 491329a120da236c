"""The resource types the fake serves, keyed by group and plural, and what discovery says of them.

The store is generic: it keeps JSON objects per resource type and knows nothing of pods or jobs.
Adding a type (a custom resource, say) is one :class:`ResourceType` registered here; behaviour
specific to a kind (defaults, immutable fields, the pods' graceful deletion) lives in
``strategies`` and the controllers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: ``/api{s}/<group>/<version>/[namespaces/<ns>/]<plural>``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Subresources served besides the object itself: "status", "scale", "log".
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # A custom resource's openAPIV3Schema (validated with jsonschema), None for built-in types.
    schema: dict[str, object] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the type across versions: the store and the audit key on it."""
        return (self.group, self.plural)


def _builtin() -> list[ResourceType]:
    rt = ResourceType
    return [
        rt("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
        rt("", "v1", "nodes", "Node", False, ("no",), ("status",)),
        rt("", "v1", "pods", "Pod", True, ("po",), ("status", "log"), ("all",)),
        rt("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",)),
        rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
        rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
        rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
        rt("", "v1", "secrets", "Secret", True),
        rt("", "v1", "events", "Event", True, ("ev",)),
        rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
        rt("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
        rt("", "v1", "limitranges", "LimitRange", True, ("limits",)),
        rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), ("all",)),
        rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), ("all",)),
        rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), ("all",)),
        rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
        rt("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",)),
        rt("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), ("all",)),
        rt("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
        rt("coordination.k8s.io", "v1", "leases", "Lease", True),
        rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
        rt(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            True,
            ("hpa",),
            ("status",),
        ),
        rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
        rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",)),
        rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
        rt(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            ("crd", "crds"),
            ("status",),
        ),
    ]


class ResourceRegistry:
    """Every served type, looked up by URL parts, by kind, or by the store's ``(group, plural)`` key."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        for resource in _builtin():
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        self._by_key[resource.key] = resource

    def remove(self, key: tuple[str, str]) -> None:
        self._by_key.pop(key, None)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_key.values()))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        found = self._by_key.get((group, plural))
        return found if found is not None and found.version == version else None

    def by_key(self, key: tuple[str, str]) -> ResourceType:
        return self._by_key[key]

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> its versions (one each here), core ("") included."""
        groups: dict[str, list[str]] = {}
        for resource in self._by_key.values():
            versions = groups.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return groups


POD_KEY = ("", "pods")
NODE_KEY = ("", "nodes")
NAMESPACE_KEY = ("", "namespaces")
SERVICE_KEY = ("", "services")
SERVICE_ACCOUNT_KEY = ("", "serviceaccounts")
CONFIGMAP_KEY = ("", "configmaps")
SECRET_KEY = ("", "secrets")
EVENT_KEY = ("", "events")
JOB_KEY = ("batch", "jobs")
DEPLOYMENT_KEY = ("apps", "deployments")
REPLICASET_KEY = ("apps", "replicasets")
ENDPOINTSLICE_KEY = ("discovery.k8s.io", "endpointslices")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
