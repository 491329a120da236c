"""The pure builders: golden objects, every one valid against the Kubernetes schema (strict).

Regenerate the golden files after an intended change with
`NANOFAAS_UPDATE_GOLDEN=1 pytest services/scheduler/tests/kubernetes/test_objects.py` and
review the diff: it is exactly what changes in the cluster.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.kubernetes import naming, objects
from nanofaas_scheduler.dispatch.kubernetes.template import load_template

from ..conftest import make_spec

# The Kubernetes version whose OpenAPI schema every built object must satisfy.
KUBERNETES_VERSION = "1.30.0"
GOLDEN = Path(__file__).parent / "golden"
TEMPLATE = Path(__file__).parents[4] / "deploy" / "kustomize" / "base" / "function-pod-template.yaml"
EXECUTION = "0123456789abcdef0123456789abcdef"


def attempt_of(spec: types_pb2.FunctionSpec, data: bytes = b'{"n": 1}', **fields: Any) -> Attempt:
    values: dict[str, Any] = {
        "execution_id": EXECUTION,
        "function_name": spec.name,
        "spec": spec,
        "request": Request(data, "application/json", {}),
        "number": 2,
        "deadline_epoch": 1_800_000_000.0,
        "timeout": 29.5,
        "timeout_ms": 30_000,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "idempotency_key": "order-42",
    }
    values.update(fields)
    return Attempt(**values)


def http_spec() -> types_pb2.FunctionSpec:
    return make_spec(
        "thumbnail",
        image="nanofaas/python-runtime:1.0",
        env={"MODE": "fast", "PORT": "9999"},
        resources=types_pb2.Resources(cpu="500m", memory="256Mi"),
    )


def stdio_spec(**fields: Any) -> types_pb2.FunctionSpec:
    return make_spec(
        "Word_Count.v2",
        image="example.org/tools:3",
        command=["wc", "-w"],
        runtime_mode=types_pb2.RUNTIME_MODE_STDIO,
        execution_mode=types_pb2.EXECUTION_MODE_WARM,
        concurrency=8,
        revision=7,
        **fields,
    )


def kube_spec(**fields: Any) -> types_pb2.FunctionSpec:
    """A spec using every Kubernetes-only field."""
    values: dict[str, Any] = {
        "image": "nanofaas/python-runtime:1.0",
        "resources": types_pb2.Resources(cpu="1", memory="256Mi", request_cpu="250m"),
        "image_pull_policy": "Never",
        "node_selector": {"pool": "fast", "kubernetes.io/arch": "amd64"},
        "tolerations": [
            types_pb2.Toleration(key="gpu", operator="Exists", effect="NoSchedule"),
            types_pb2.Toleration(
                key="node.kubernetes.io/unreachable",
                operator="Exists",
                effect="NoExecute",
                toleration_seconds=30,
            ),
        ],
        "service_account_name": "fn-reader",
        "secrets": [
            types_pb2.SecretMount(name="db-credentials"),
            types_pb2.SecretMount(name="tls", mount_path="/etc/tls"),
        ],
        **fields,
    }
    return make_spec("resize", **values)


def options(**fields: Any) -> objects.PodOptions:
    return objects.PodOptions(**{"namespace": "functions", "callback_url": "http://nanofaas:8080", **fields})


CASES: dict[str, Any] = {
    "job-http": lambda: objects.build_job(attempt_of(http_spec()), options()),
    "job-stdio": lambda: objects.build_job(
        attempt_of(stdio_spec(), idempotency_key="", traceparent=""), options(image_pull_policy="Always")
    ),
    "deployment-stdio": lambda: objects.build_deployment(stdio_spec(max_replicas=3), options(), 3),
    "service-stdio": lambda: objects.build_service(stdio_spec(), options()),
    "job-http-template": lambda: objects.build_job(
        attempt_of(http_spec()), options(template=load_template(str(TEMPLATE)))
    ),
    "deployment-http-template": lambda: objects.build_deployment(
        http_spec(), options(template=load_template(str(TEMPLATE))), 1
    ),
    "job-kubernetes-fields-template": lambda: objects.build_job(
        attempt_of(kube_spec()), options(template=load_template(str(TEMPLATE)))
    ),
    "deployment-kubernetes-fields-template": lambda: objects.build_deployment(
        kube_spec(execution_mode=types_pb2.EXECUTION_MODE_WARM),
        options(template=load_template(str(TEMPLATE))),
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_and_valid(case: str) -> None:
    built = CASES[case]()
    kubernetes_validate.validate(built, KUBERNETES_VERSION, strict=True)
    path = GOLDEN / f"{case}.json"
    text = json.dumps(built, indent=2, sort_keys=True) + "\n"
    if os.environ.get("NANOFAAS_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{case} differs from {path} (NANOFAAS_UPDATE_GOLDEN=1 to accept)"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_job_fields_the_scheduler_relies_on() -> None:
    job = objects.build_job(attempt_of(http_spec(), data=b'{"secret-input": "x"}'), options())
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # the scheduler owns retries
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 30 + 5  # the attempt's deadline, plus a grace
    assert spec["ttlSecondsAfterFinished"] == 300
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    env = _env(container)
    assert env["PORT"] == "8080"  # the platform's value, not the spec's 9999
    assert env["NANOFAAS_SINGLE_USE"] == "1"
    assert env["EXECUTION_ID"] == EXECUTION and env["NANOFAAS_ATTEMPT"] == "2"
    assert env["HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["NANOFAAS_POD_UID"] == {
        "fieldRef": {"fieldPath": "metadata.uid"}
    }  # refuses misdirected requests
    assert "secret-input" not in json.dumps(job)  # the input travels in the POST, never in the Job
    labels = job["metadata"]["labels"]
    assert labels[naming.EXECUTION_LABEL] == EXECUTION and labels[naming.ATTEMPT_LABEL] == "2"
    assert job["metadata"]["annotations"][naming.IDEMPOTENCY_ANNOTATION] == "order-42"
    assert spec["template"]["metadata"]["labels"] == labels


def test_stdio_and_file_functions_run_under_the_watchdog() -> None:
    container = objects.function_container(stdio_spec(), options(), {})
    assert container["command"] == ["nanofaas-watchdog", "--mode", "stdio", "--", "wc", "-w"]
    file_spec = make_spec(runtime_mode=types_pb2.RUNTIME_MODE_FILE, image="nanofaas/python-runtime:1")
    assert objects.container_command(file_spec) == [
        "nanofaas-watchdog",
        "--mode",
        "file",
        "--",
        "nanofaas-runtime",
    ]
    assert objects.container_command(make_spec(runtime_command="node 'my app.js'")) == ["node", "my app.js"]
    assert objects.container_command(http_spec()) == []  # the image's entrypoint: the runtime
    with pytest.raises(objects.UnrunnableFunction, match="needs command"):
        objects.container_command(make_spec(runtime_mode=types_pb2.RUNTIME_MODE_STDIO, image="busybox"))


def test_deployment_rolls_without_losing_capacity() -> None:
    deployment = objects.build_deployment(stdio_spec(max_replicas=3), options(), 3)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["periodSeconds"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["replicas"] == 3
    assert _env(container)["NANOFAAS_RUNTIME_CONCURRENCY"] == "3"  # ceil(concurrency 8 / maxReplicas 3)

    assert pod["metadata"]["annotations"][naming.REVISION_ANNOTATION] == "7"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert all(pod["metadata"]["labels"][key] == value for key, value in selector.items())
    assert objects.build_service(stdio_spec(), options())["spec"]["selector"] == selector


def test_a_pod_takes_its_target_or_its_share_of_concurrency() -> None:
    assert objects.pod_concurrency(stdio_spec()) == 1  # maxReplicas defaults to concurrency
    assert objects.pod_concurrency(stdio_spec(target_in_flight=4)) == 4
    assert objects.pod_concurrency(stdio_spec(max_replicas=2, target_in_flight=1)) == 4


def test_the_template_goes_under_the_function() -> None:
    template = {
        "metadata": {"labels": {"team": "data", naming.COMPONENT: "fake"}, "annotations": {"mesh": "on"}},
        "spec": {
            "nodeSelector": {"pool": "functions"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "fn", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "functions",
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "function",
                    "image": "ignored",
                    "env": [{"name": "PORT", "value": "1"}, {"name": "X", "value": "y"}],
                },
                {"name": "proxy", "image": "envoy:1"},
            ],
        },
    }
    job = objects.build_job(attempt_of(http_spec()), options(template=template))
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"][naming.COMPONENT] == "job"  # ours win
    assert pod["metadata"]["annotations"]["mesh"] == "on"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "functions" and spec["nodeSelector"] == {"pool": "functions"}
    assert spec["tolerations"][0]["key"] == "dedicated" and spec["imagePullSecrets"] == [{"name": "registry"}]
    assert [c["name"] for c in spec["containers"]] == ["function", "proxy"]
    function = spec["containers"][0]
    assert function["image"] == "nanofaas/python-runtime:1.0"
    assert _env(function)["PORT"] == "8080"  # the function's env replaces the template's
    assert spec["automountServiceAccountToken"] is False  # a platform default the template kept


@pytest.mark.parametrize(
    ("names", "distinct"),
    [
        (["a.b", "a_b", "a-b", "A-b", "a-b-"], True),
        (["x" * 63, "x" * 62 + "y", "x" * 62 + "Y"], True),
    ],
)
def test_names_are_valid_stable_and_collision_free(names: list[str], distinct: bool) -> None:
    dns = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    label = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for name in names:
        for built in (naming.function_object_name(name), naming.job_name(name, EXECUTION, 12)):
            assert len(built) <= 63 and dns.fullmatch(built), built
        value = naming.label_value(name)
        assert len(value) <= 63 and label.fullmatch(value), value
        assert naming.function_object_name(name) == naming.function_object_name(name)
    assert len({naming.function_object_name(n) for n in names}) == len(names)
    assert len({naming.label_value(n) for n in names}) == len(names)
    assert naming.label_value("thumbnail") == "thumbnail"  # valid names are kept as they are
    assert naming.function_object_name("thumbnail") == "fn-thumbnail"


def test_kubernetes_fields_reach_the_pod() -> None:
    pod = objects.build_job(attempt_of(kube_spec()), options(image_pull_policy="Always"))["spec"]["template"]
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64", "pool": "fast"}
    assert spec["tolerations"] == [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ]
    assert spec["serviceAccountName"] == "fn-reader"
    # A function given a service account gets its token (the platform default is none).
    assert "automountServiceAccountToken" not in spec
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "Never"  # the function's, over the scheduler's default
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    # Secrets by name only: env ones through envFrom, file ones as read-only volumes.
    assert container["envFrom"] == [{"secretRef": {"name": "db-credentials"}}]
    assert container["volumeMounts"] == [
        {"name": objects.secret_volume_name(1), "mountPath": "/etc/tls", "readOnly": True}
    ]
    assert spec["volumes"] == [{"name": objects.secret_volume_name(1), "secret": {"secretName": "tls"}}]


def test_unset_kubernetes_fields_leave_the_pod_as_before() -> None:
    spec = objects.build_job(attempt_of(http_spec()), options())["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "serviceAccountName", "volumes"} & set(spec)
    assert spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent" and "envFrom" not in container


def test_function_fields_win_over_the_template_and_lists_and_maps_merge() -> None:
    template = {
        "spec": {
            "nodeSelector": {"pool": "slow", "zone": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "fn", "effect": "NoSchedule"}],
            "serviceAccountName": "functions",
            "automountServiceAccountToken": False,
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [
                {
                    "name": "function",
                    "imagePullPolicy": "Always",
                    "envFrom": [{"configMapRef": {"name": "common"}}],
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
        }
    }
    job = objects.build_job(attempt_of(kube_spec()), options(template=template))
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "fast", "zone": "a", "kubernetes.io/arch": "amd64"}  # map: merged
    assert [t["key"] for t in spec["tolerations"]] == ["dedicated", "gpu", "node.kubernetes.io/unreachable"]
    assert spec["serviceAccountName"] == "fn-reader"  # scalar: the function's
    assert spec["automountServiceAccountToken"] is False  # the template said so explicitly
    assert [v["name"] for v in spec["volumes"]] == [objects.secret_volume_name(1), "tmp"]
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["envFrom"] == [
        {"configMapRef": {"name": "common"}},
        {"secretRef": {"name": "db-credentials"}},
    ]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/etc/tls", "/tmp"]


def test_the_deployment_gets_the_same_kubernetes_fields() -> None:
    spec = kube_spec(execution_mode=types_pb2.EXECUTION_MODE_WARM)
    job_pod = objects.build_job(attempt_of(spec), options())["spec"]["template"]["spec"]
    warm_pod = objects.build_deployment(spec, options(), 1)["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "serviceAccountName", "volumes"):
        assert warm_pod[key] == job_pod[key], key
    for key in ("imagePullPolicy", "resources", "envFrom", "volumeMounts"):
        assert warm_pod["containers"][0][key] == job_pod["containers"][0][key], key
