"""The Kubernetes-only FunctionSpec fields through the real app and a fake gRPC registry."""

from __future__ import annotations

from typing import Any

import pytest

from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPEC: dict[str, Any] = {
    "name": "kube",
    "image": "nanofaas/python-runtime:1",
    "resources": {"cpu": "1", "memory": "256Mi", "requests": {"cpu": "250m"}},
    "imagePullPolicy": "Always",
    "nodeSelector": {"pool": "functions"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "fn", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "serviceAccountName": "fn-reader",
    "secrets": [{"name": "db-credentials"}, {"name": "tls", "mountPath": "/etc/tls"}],
}


async def test_every_kubernetes_field_reaches_the_registry_and_comes_back(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url("/v1/functions"), json=SPEC) as response:
        assert response.status == 201, await response.text()
    sent = gateway.registry.registered[-1]
    assert (sent.resources.cpu, sent.resources.request_cpu, sent.resources.request_memory) == (
        "1",
        "250m",
        "",
    )
    assert sent.image_pull_policy == "Always" and sent.service_account_name == "fn-reader"
    assert dict(sent.node_selector) == {"pool": "functions"}
    assert [(t.key, t.operator, t.value, t.effect) for t in sent.tolerations] == [
        ("dedicated", "Equal", "fn", "NoSchedule"),
        ("", "Exists", "", "NoExecute"),
    ]
    assert not sent.tolerations[0].HasField("toleration_seconds")
    assert sent.tolerations[1].toleration_seconds == 30
    assert [(s.name, s.mount_path) for s in sent.secrets] == [("db-credentials", ""), ("tls", "/etc/tls")]
    async with gateway.session.get(gateway.url("/v1/functions/kube")) as response:
        body = await response.json()
    assert {key: body[key] for key in SPEC} == SPEC


async def test_a_function_without_them_shows_none(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url("/v1/functions"), json={"name": "plain", "image": "i"}):
        pass
    async with gateway.session.get(gateway.url("/v1/functions/plain")) as response:
        body = await response.json()
    assert not {"imagePullPolicy", "nodeSelector", "tolerations", "serviceAccountName", "secrets"} & set(body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nodeSelector": {"pool": 1}}, "nodeSelector.pool"),
        ({"tolerations": {"key": "k"}}, "tolerations"),
        ({"tolerations": [{"tolerationSeconds": "30"}]}, "tolerations.0.tolerationSeconds"),
        ({"secrets": [{"mountPath": "/x"}]}, "secrets.0.name"),
        ({"secrets": "db"}, "secrets"),
        ({"imagePullPolicy": 1}, "imagePullPolicy"),
        ({"resources": {"requests": {"cpu": 1}}}, "resources.requests.cpu"),
    ],
)
async def test_wrong_json_types_are_422_naming_the_field(
    gateway: Gateway, change: dict[str, Any], field: str
) -> None:
    async with gateway.session.post(gateway.url("/v1/functions"), json={**SPEC, **change}) as response:
        assert response.status == 422
        body = await response.json()
    assert body["error"]["message"].startswith(f"{field}:"), body
