"""The control plane's Role grants exactly the (apiGroup, resource, verb) triples its code uses.

Where the truth comes from:

* ``deploy/kustomize/rbac-record.json``, when it exists: what the Kubernetes backend's e2e run
  recorded through the fake cluster's audit (``fakekube`` ``audit.rules(user=...)``: a JSON list
  of rules, or an object mapping each client to such a list, whose union is taken). Then the
  Role must equal it: a verb used but not granted fails, and so does a verb granted but unused.
* Until then: the registry's permissions as docs/persistence.md lists them, plus
  ``BACKEND_EXPECTED`` below, what the scheduler's Kubernetes backend is specified to call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from .conftest import KUSTOMIZE, ROOT, Manifest, only

RECORD = KUSTOMIZE / "rbac-record.json"
PERSISTENCE_DOC = ROOT / "docs" / "persistence.md"

Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# The scheduler's Kubernetes backend (written in parallel; replaced by rbac-record.json once
# its e2e run records what it really calls):
BACKEND_EXPECTED: frozenset[Triple] = frozenset(
    # JOB functions: one Job per attempt, watched to completion, deleted when cancelled.
    [("batch", "jobs", verb) for verb in ("create", "delete", "get", "list", "watch")]
    # WARM functions: a Deployment (scaled by patching replicas) and a Service per function.
    + [("apps", "deployments", verb) for verb in ("create", "delete", "get", "list", "patch", "watch")]
    + [("", "services", verb) for verb in ("create", "delete", "get", "list", "patch", "watch")]
    # The ready addresses of a WARM function's pods, which the dispatcher calls.
    + [("discovery.k8s.io", "endpointslices", verb) for verb in ("get", "list", "watch")]
    # Pods: start failures (ImagePullBackOff), exit codes, stopping a stuck attempt's pod.
    + [("", "pods", verb) for verb in ("delete", "get", "list", "watch")]
    # A crashed function's last log lines, in the execution's error.
    + [("", "pods/log", "get")]
)


def triples(rules: Iterable[Mapping[str, Any]]) -> set[Triple]:
    """Expand Role rules into triples, refusing what a least-privilege Role must not use."""
    found: set[Triple] = set()
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        found |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return found


def registry_from_docs() -> set[Triple]:
    """Parse docs/persistence.md's ``**Permissions**`` line of the kubernetes store.

    It reads like ``functions.nanofaas.io`` get, list; ``functions/status`` patch; ``configmaps``
    get: a resource with a dot names its API group, a subresource inherits its parent's group, a
    plain name is the core group.
    """
    text = " ".join(PERSISTENCE_DOC.read_text().split())
    match = re.search(r"\*\*Permissions\*\*[^:]*:(.*?)\.(?:\s|$)", text)
    assert match, f"{PERSISTENCE_DOC}: no **Permissions** line"
    groups: dict[str, str] = {}
    found: set[Triple] = set()
    for part in match.group(1).split(";"):
        named = re.fullmatch(r"\s*`([^`]+)`\s+([a-z, ]+)\s*", part)
        assert named, f"cannot read {part!r} in {PERSISTENCE_DOC}"
        name, verbs = named.group(1), [v.strip() for v in named.group(2).split(",")]
        resource, _, group = name.partition(".")
        if "/" in resource:
            group = groups[resource.split("/", 1)[0]]
        groups[resource] = group
        found |= {(group, resource, verb) for verb in verbs}
    return found


def recorded() -> set[Triple]:
    """The backend's calls as the record lists them: {"rules": [{apiGroup, resource, verbs}]}."""
    record = json.loads(RECORD.read_text())
    return {(rule["apiGroup"], rule["resource"], verb) for rule in record["rules"] for verb in rule["verbs"]}


def backend() -> set[Triple]:
    return recorded() if RECORD.exists() else set(BACKEND_EXPECTED)


def expected() -> set[Triple]:
    """One ServiceAccount serves the pod: the backend's calls and the registry store's."""
    return registry_from_docs() | backend()


def test_the_docs_list_is_read() -> None:
    """The parser finds the registry's documented permissions (or this check would be empty)."""
    assert registry_from_docs() == {
        *(("nanofaas.io", "functions", v) for v in ("get", "list", "watch", "create", "update")),
        *(("nanofaas.io", "functions", v) for v in ("patch", "delete")),
        ("nanofaas.io", "functions/status", "patch"),
        *(("", "configmaps", v) for v in ("get", "create", "update")),
    }


@pytest.mark.parametrize("overlay", ["base", "kind", "cluster"])
def test_role_grants_exactly_what_is_used(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    role = only(rendered[overlay], "Role", "nanofaas-control-plane")
    granted = triples(role["rules"])
    wanted = expected()
    assert not wanted - granted, f"used but not granted: {sorted(wanted - granted)}"
    assert not granted - wanted, f"granted but never used: {sorted(granted - wanted)}"


def test_split_roles_together_grant_exactly_what_is_used(rendered: dict[str, list[Manifest]]) -> None:
    """With the function namespace apart, the backend's rules move there; nothing is added."""
    objects = rendered["cluster-split"]
    control = triples(only(objects, "Role", "nanofaas-control-plane")["rules"])
    functions = triples(only(objects, "Role", "nanofaas-functions")["rules"])
    assert control == registry_from_docs()
    assert functions == backend()


@pytest.mark.parametrize("overlay", ["base", "kind", "cluster", "cluster-split"])
def test_bindings_name_the_control_plane_account(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    account = only(objects, "ServiceAccount")
    roles = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects if o["kind"] == "Role"}
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert bindings and not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    for binding in bindings:
        assert (binding["metadata"].get("namespace"), binding["roleRef"]["name"]) in roles
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] == account["metadata"]["name"]
            assert subject.get("namespace", account["metadata"].get("namespace")) == account["metadata"].get(
                "namespace"
            )
