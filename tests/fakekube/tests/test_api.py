"""The API server through the official client: CRUD, Status errors, validation, selectors, patches."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fakekube import FakeCluster

from .conftest import http, raw


def _status(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    assert body["kind"] == "Status"
    return body


def _pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
    }


def test_create_get_replace_delete_with_server_fields(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and int(meta.resource_version) > 0
    created.data["a"] = "2"
    replaced = core.replace_namespaced_config_map("cfg", "default", created)
    assert int(replaced.metadata.resource_version) > int(meta.resource_version)
    assert replaced.metadata.uid == meta.uid
    assert core.read_namespaced_config_map("cfg", "default").data == {"a": "2"}
    core.delete_namespaced_config_map("cfg", "default")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cfg", "default")
    assert missing.value.status == 404
    assert _status(missing.value)["reason"] == "NotFound"
    assert _status(missing.value)["message"] == 'configmaps "cfg" not found'


def test_status_errors_already_exists_conflict_not_found(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    assert (exists.value.status, _status(exists.value)["reason"]) == (409, "AlreadyExists")
    core.patch_namespaced_config_map("x", "default", {"data": {"k": "v"}})
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("x", "default", first)  # carries the old resourceVersion
    assert (stale.value.status, _status(stale.value)["reason"]) == (409, "Conflict")
    assert "the object has been modified" in _status(stale.value)["message"]
    with pytest.raises(ApiException) as gone:
        core.delete_namespaced_config_map("nope", "default")
    assert (gone.value.status, _status(gone.value)["reason"]) == (404, "NotFound")
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("missing-ns", {"metadata": {"name": "x"}})
    assert no_namespace.value.status == 404
    assert _status(no_namespace.value)["message"] == 'namespaces "missing-ns" not found'


def test_schema_validation_rejects_like_the_api_server(core: client.CoreV1Api, api: client.ApiClient) -> None:
    # The typed client checks models itself, so send raw JSON as a buggy client would.
    pods = "/api/v1/namespaces/default/pods"
    code, status = raw(
        api, "POST", pods, {"metadata": {"name": "p"}, "spec": {"containers": [{"image": "i"}]}}
    )
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "spec.containers[0].name"
    code, status = raw(
        api,
        "POST",
        pods,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]},
        },
    )
    assert code == 400
    assert 'unknown field "spec.containers[0].bogus"' in status["message"]
    code, status = raw(
        api,
        "POST",
        pods,
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "ports": "80"}]}},
    )
    assert (code, status["reason"]) == (400, "BadRequest")
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Not_A_Name"}})
    assert (bad_name.value.status, _status(bad_name.value)["details"]["causes"][0]["field"]) == (
        422,
        "metadata.name",
    )
    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_config_map("default", {"metadata": {"name": "ok", "labels": {"a": "x" * 64}}})
    assert bad_label.value.status == 422


def test_generate_name_and_service_defaults(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map("default", {"metadata": {"generateName": "cfg-"}})
    assert made.metadata.name.startswith("cfg-") and len(made.metadata.name) == 9
    svc = core.create_namespaced_service(
        "default",
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    )
    assert svc.spec.cluster_ip and svc.spec.type == "ClusterIP"
    assert svc.spec.ports[0].target_port == 80 and svc.spec.ports[0].protocol == "TCP"


def test_label_and_field_selectors(core: client.CoreV1Api) -> None:
    for name, labels in (("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}), ("c", {"app": "db"})):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kwargs: str) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map("default", **kwargs).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,tier") == ["a"]
    assert names(label_selector="app in (db, other)") == ["c"]
    assert names(label_selector="app notin (web),!tier") == ["c"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="app=web") == ["a"]
    with pytest.raises(ApiException) as bad:
        names(label_selector="app in (")
    assert bad.value.status == 400
    with pytest.raises(ApiException) as unsupported:
        names(field_selector="data.x=1")
    assert unsupported.value.status == 400


def test_pagination_with_limit_and_continue(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert [i.metadata.name for i in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3
    rest = core.list_namespaced_config_map("default", limit=10, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["cm-2", "cm-3", "cm-4"]
    assert rest.metadata._continue is None


def test_merge_strategic_json_patches(apps: client.AppsV1Api, api: client.ApiClient) -> None:
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "a",
                                "image": "img:1",
                                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                            },
                            {"name": "b", "image": "img:1"},
                        ]
                    },
                },
            },
        },
    )

    def containers() -> list[Any]:
        return list(apps.read_namespaced_deployment("d", "default").spec.template.spec.containers)

    # Strategic merge (the client's default for dicts): containers merge by name, env by name.
    apps.patch_namespaced_deployment(
        "d",
        "default",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "image": "img:2", "env": [{"name": "Y", "value": "3"}]}]
                    }
                }
            }
        },
    )
    found = containers()
    assert [(c.name, c.image) for c in found] == [("a", "img:2"), ("b", "img:1")]
    assert [(e.name, e.value) for e in found[0].env] == [("X", "1"), ("Y", "3")]
    # $patch: delete removes one list element by its merge key.
    apps.patch_namespaced_deployment(
        "d", "default", {"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}}
    )
    assert [c.name for c in containers()] == ["a"]

    def raw_patch(content_type: str, body: Any) -> int:
        return raw(
            api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/d", body, content_type=content_type
        )[0]

    # JSON merge patch replaces lists wholesale.
    raw_patch(
        "application/merge-patch+json",
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:3"}]}}}},
    )
    assert [c.name for c in containers()] == ["c"]
    raw_patch(
        "application/json-patch+json",
        [
            {"op": "test", "path": "/spec/replicas", "value": 0},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
        ],
    )
    assert apps.read_namespaced_deployment("d", "default").metadata.labels == {"k": "v"}
    assert (
        raw_patch("application/json-patch+json", [{"op": "test", "path": "/spec/replicas", "value": 5}])
        == 422
    )
    assert raw_patch("application/json-patch+json", [{"op": "remove", "path": "/spec/nothing"}]) == 422


def test_server_side_apply_creates_then_prunes_fields(api: client.ApiClient, core: client.CoreV1Api) -> None:
    def apply(body: dict[str, Any], manager: str | None = "tests") -> int:
        return raw(
            api,
            "PATCH",
            "/api/v1/namespaces/default/configmaps/applied",
            body,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", manager)] if manager else [],
        )[0]

    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied"},
        "data": {"a": "1", "b": "2"},
    }
    assert apply(doc) == 201
    doc["data"] = {"a": "1"}
    assert apply(doc) == 200
    assert core.read_namespaced_config_map("applied", "default").data == {"a": "1"}
    assert apply(doc, manager=None) == 422


def test_status_subresource_is_separate_from_spec(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    core.create_namespaced_service("default", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    ingress = {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}
    core.patch_namespaced_service("s", "default", {"status": ingress})  # ignored: status is a subresource
    assert core.read_namespaced_service("s", "default").status.load_balancer.ingress is None
    core.patch_namespaced_service_status("s", "default", {"spec": {"type": "NodePort"}, "status": ingress})
    found = core.read_namespaced_service("s", "default")
    assert found.spec.type == "ClusterIP" and found.status.load_balancer.ingress[0].ip == "10.0.0.9"
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "s"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}}, "template": template},
        },
    )
    generation = apps.read_namespaced_deployment("s", "default").metadata.generation
    apps.patch_namespaced_deployment_scale("s", "default", {"spec": {"replicas": 2}})
    scale = apps.read_namespaced_deployment_scale("s", "default")
    assert scale.spec.replicas == 2 and scale.status.selector == "a=b"
    assert apps.read_namespaced_deployment("s", "default").metadata.generation == generation + 1


def test_immutable_fields_are_refused(apps: client.AppsV1Api, batch: client.BatchV1Api) -> None:
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "i"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b", "c": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    with pytest.raises(ApiException) as selector:
        apps.patch_namespaced_deployment("i", "default", {"spec": {"selector": {"matchLabels": {"c": "d"}}}})
    assert selector.value.status == 422
    with pytest.raises(ApiException) as restart:
        batch.create_namespaced_job(
            "default",
            {
                "metadata": {"name": "j"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            },
        )
    assert restart.value.status == 422
    assert _status(restart.value)["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"


def test_orphan_background_and_foreground_deletion(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    def make(name: str, owner: Any = None) -> Any:
        refs = (
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": owner.metadata.name,
                    "uid": owner.metadata.uid,
                    "blockOwnerDeletion": True,
                }
            ]
            if owner is not None
            else None
        )
        return core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "ownerReferences": refs}}
        )

    def gone(name: str) -> None:
        fake_cluster.wait_for("configmaps", "default", name, lambda obj: obj is None, timeout=10)

    owner = make("owner")
    make("child", owner)
    core.delete_namespaced_config_map("owner", "default")  # Background by default
    gone("child")

    owner = make("owner2")
    make("child2", owner)
    core.delete_namespaced_config_map("owner2", "default", propagation_policy="Orphan")
    orphan = core.read_namespaced_config_map("child2", "default")
    assert orphan.metadata.owner_references is None

    owner = make("owner3")
    make("child3", owner)
    core.delete_namespaced_config_map("owner3", "default", propagation_policy="Foreground")
    gone("child3")
    gone("owner3")


def test_finalizers_hold_deletion(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "held", "finalizers": ["example.com/x"]}}
    )
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    fake_cluster.wait_for("configmaps", "default", "held", lambda obj: obj is None, timeout=10)


def test_namespace_deletion_empties_it(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    fake_cluster.wait_for("serviceaccounts", "scratch", "default", lambda obj: obj is not None, timeout=10)
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "c"}})
    core.delete_namespace("scratch")
    fake_cluster.wait_for("namespaces", None, "scratch", lambda obj: obj is None, timeout=10)
    assert fake_cluster.get("configmaps", "scratch", "c") is None


def test_pod_needs_its_service_account(core: client.CoreV1Api) -> None:
    pod = _pod("p")
    pod["spec"]["serviceAccountName"] = "missing"
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod("default", pod)
    assert (refused.value.status, _status(refused.value)["reason"]) == (403, "Forbidden")


def test_discovery_and_version(api: client.ApiClient) -> None:
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "discovery.k8s.io"} <= groups
    resources = {r.name for r in client.AppsV1Api(api).get_api_resources().resources}
    assert {"deployments", "deployments/scale", "deployments/status", "replicasets"} <= resources
    core = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/log", "services", "configmaps", "secrets", "serviceaccounts"} <= core
    assert client.VersionApi(api).get_code().minor == "32"


def test_audit_records_verbs_and_resources(
    fake_cluster: FakeCluster, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    fake_cluster.audit.clear()
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.list_namespaced_config_map("default")
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment_scale("none", "default")
    assert fake_cluster.audit.calls(user="test") == {
        ("create", "configmaps"),
        ("list", "configmaps"),
        ("get", "deployments/scale"),
    }
    assert fake_cluster.audit.permissions(user="test")[("apps", "deployments/scale")] == {"get"}
    assert fake_cluster.audit.calls(user="someone-else") == set()
    rules = fake_cluster.audit.rules(user="test")
    assert {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]} in rules
    assert fake_cluster.audit.uncovered(rules, user="test") == set()
    role = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
    assert fake_cluster.audit.uncovered(role, user="test") == {("apps", "deployments/scale", "get")}


def test_malformed_requests_get_status_answers(fake_cluster: FakeCluster) -> None:
    pods = "/api/v1/namespaces/default/pods"
    code, body = http(fake_cluster, "POST", pods, b"{not json")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = http(fake_cluster, "PATCH", f"{pods}/x", b"{}", content_type="text/plain")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    code, body = http(fake_cluster, "GET", "/apis/nothing.example.com/v1/things")
    assert (code, body["reason"]) == (404, "NotFound")
    code, body = http(fake_cluster, "GET", f"{pods}?labelSelector=a%20in%20(")
    assert code == 400
    code, body = http(fake_cluster, "POST", pods, b"x" * (4 * 1024 * 1024))
    assert code == 413
    code, body = http(fake_cluster, "GET", f"{pods}?resourceVersion=999999999")
    assert (code, body["reason"]) == (504, "Timeout")


def test_field_validation_ignore_drops_unknown_fields(api: client.ApiClient, core: client.CoreV1Api) -> None:
    body = {"metadata": {"name": "loose"}, "data": {"a": "1"}, "extra": True}
    path = "/api/v1/namespaces/default/configmaps"
    assert raw(api, "POST", path, body)[0] == 400
    code, created = raw(api, "POST", path, body, query=[("fieldValidation", "Ignore")])
    assert code == 201 and "extra" not in created
    assert core.read_namespaced_config_map("loose", "default").data == {"a": "1"}


def test_an_unknown_bearer_token_is_401_and_the_scheme_is_case_insensitive(fake_cluster: FakeCluster) -> None:
    def status(authorization: str) -> int:
        request = urllib.request.Request(
            fake_cluster.url + "/api/v1/namespaces", headers={"Authorization": authorization}
        )
        assert fake_cluster.certificates is not None
        context = ssl.create_default_context(cadata=fake_cluster.certificates.ca_pem.decode())
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    assert status("Bearer not-a-token") == 401
    assert status(f"bearer {fake_cluster.token_for('pod')}") == 200  # as in-cluster clients send it
    assert ("list", "namespaces") in fake_cluster.audit.calls(user="pod")
    assert any(r.code == 401 for r in fake_cluster.audit.records(user="system:unknown-token"))
