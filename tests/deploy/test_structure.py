"""What the rendered overlays must hold: one control-plane pod of three hardened sidecars.

These are the properties the platform relies on (a single scheduler, localhost between the
three services, probes Kubernetes can act on) and the ones a reviewer would check by eye.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .conftest import KUSTOMIZE, OVERLAYS, Manifest, config_data, control_plane, only

CONTAINERS = ("gateway", "scheduler", "registry")
GRPC_PORTS = {"scheduler": 9090, "registry": 9091}
SERVICE_PORTS = {
    "http": 8080,
    "grpc-scheduler": 9090,
    "grpc-registry": 9091,
    "metrics-gateway": 8081,
    "metrics-sched": 9190,
    "metrics-reg": 9191,
}


def containers(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    pod = control_plane(objects)["spec"]["template"]["spec"]
    return {container["name"]: container for container in pod["containers"]}


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_one_control_plane_pod_of_three_containers(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    planes = [
        o
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "control-plane"
    ]
    assert [p["metadata"]["name"] for p in planes] == ["nanofaas"]
    deployment = control_plane(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == list(CONTAINERS)
    assert pod["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"]
    assert not pod.get("hostNetwork")
    # The selector picks exactly this pod template.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_probes(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    by_name = containers(rendered[overlay])
    gateway = by_name["gateway"]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    for name, port in GRPC_PORTS.items():
        container = by_name[name]
        ports = {p["containerPort"] for p in container["ports"]}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container[kind]
            assert probe["grpc"]["port"] == port, (name, kind)
            assert port in ports
            assert probe.get("grpc", {}).get("service", "") == ""  # the overall status
    for container in by_name.values():
        # A slow start is the startup probe's business, never a liveness restart.
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_security_and_resources(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    pod = control_plane(rendered[overlay])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the images' USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_settings_reach_the_containers(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    by_name = containers(objects)
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    pod = control_plane(objects)["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps  # generated names resolved
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps
    for name in ("scheduler", "registry"):
        env = {e["name"]: e for e in by_name[name].get("env", [])}
        assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    scheduler = config_data(objects, "nanofaas-scheduler")
    assert scheduler["NANOFAAS_BACKEND"] == "kubernetes"
    assert config_data(objects, "nanofaas-registry")["NANOFAAS_REGISTRY_STORE"] == "kubernetes"
    # The pod template file is where NANOFAAS_K8S_POD_TEMPLATE says.
    mount = next(m for m in by_name["scheduler"]["volumeMounts"] if m["name"] == "function-pod-template")
    template = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "function-pod-template")
    template_data = config_data(objects, template.rsplit("-", 1)[0])
    assert scheduler["NANOFAAS_K8S_POD_TEMPLATE"] in {f"{mount['mountPath']}/{key}" for key in template_data}
    # SIGTERM drains for NANOFAAS_SHUTDOWN_GRACE_S; the kubelet must not SIGKILL before.
    assert pod["terminationGracePeriodSeconds"] > float(scheduler["NANOFAAS_SHUTDOWN_GRACE_S"])
    # The callback URL is the control plane's Service, on its REST port.
    service = only(objects, "Service", "nanofaas")
    assert scheduler["NANOFAAS_CALLBACK_URL"].startswith(f"http://{service['metadata']['name']}")
    assert scheduler["NANOFAAS_CALLBACK_URL"].endswith(":8080")


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_service(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    service = only(objects, "Service", "nanofaas")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert len(service["spec"]["ports"]) == len(ports)  # no port twice (e.g. from a patch)
    assert {name: p["port"] for name, p in ports.items()} == SERVICE_PORTS
    declared = {p["name"]: p["containerPort"] for c in containers(objects).values() for p in c["ports"]}
    for name, port in ports.items():
        assert declared[port["targetPort"]] == SERVICE_PORTS[name]
    labels = control_plane(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    metrics = {port for name, port in SERVICE_PORTS.items() if name.startswith("metrics-")}
    assert int(annotations["prometheus.io/port"]) in metrics


def test_kind_overlay(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["kind"]
    for container in containers(objects).values():
        assert container["image"] == f"nanofaas/{container['name']}:dev"
        assert container["imagePullPolicy"] == "IfNotPresent"
    service = only(objects, "Service", "nanofaas")
    assert service["spec"]["type"] == "NodePort"
    jaeger = only(objects, "Service", "jaeger")
    assert {p["port"] for p in jaeger["spec"]["ports"]} >= {4317, 16686}
    receiver = only(objects, "Deployment", "jaeger")["spec"]["template"]["spec"]["containers"][0]
    assert receiver["image"].startswith("jaegertracing/all-in-one:")
    common = config_data(objects, "nanofaas-common")
    assert common["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    # Every NodePort is published on the host by the kind cluster config.
    config = yaml.safe_load((KUSTOMIZE / "overlays" / "kind" / "kind-cluster.yaml").read_text())
    mapped = {m["containerPort"] for node in config["nodes"] for m in node.get("extraPortMappings", [])}
    node_ports = {p["nodePort"] for s in (service, jaeger) for p in s["spec"]["ports"] if "nodePort" in p}
    assert node_ports == mapped == {30080, 30686}


@pytest.mark.parametrize("overlay", ["cluster", "cluster-split"])
def test_cluster_overlay(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    images = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images
    for image in images:
        assert image_tag(image) not in {None, "latest", "dev"}, image
        assert not image.startswith("nanofaas/"), f"{image}: not from the user's registry"
    assert config_data(objects, "nanofaas-common")["OTEL_EXPORTER_OTLP_ENDPOINT"]
    # Callbacks and ENDPOINT functions never reach link-local (cloud metadata) addresses.
    denied = config_data(objects, "nanofaas-common")["NANOFAAS_OUTBOUND_DENY_CIDRS"].split(",")
    assert {"169.254.0.0/16", "fe80::/10"} <= set(denied)
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    ingress = policies["nanofaas-control-plane-ingress"]["spec"]
    assert {p["port"] for rule in ingress["ingress"] for p in rule["ports"]} == set(SERVICE_PORTS.values())
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    egress = [p for p in policies.values() if "Egress" in p["spec"]["policyTypes"]]
    assert egress
    for policy in egress:
        assert policy["metadata"].get("namespace") in namespaces
        allowed = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert allowed == {(8080, "TCP"), (53, "UDP"), (53, "TCP")}


def test_function_namespace_component(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["cluster-split"]
    functions = config_data(objects, "nanofaas-scheduler")["NANOFAAS_K8S_NAMESPACE"]
    control = control_plane(objects)["metadata"]["namespace"]
    assert functions != control
    assert only(objects, "Namespace", functions)
    role = only(objects, "Role", "nanofaas-functions")
    assert role["metadata"]["namespace"] == functions
    binding = only(objects, "RoleBinding", "nanofaas-functions")
    assert binding["metadata"]["namespace"] == functions
    account = only(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": control}
    ]
    callback = config_data(objects, "nanofaas-scheduler")["NANOFAAS_CALLBACK_URL"]
    assert callback == f"http://nanofaas.{control}.svc:8080"
    # The control plane's own Role keeps only what the registry needs.
    own = only(objects, "Role", "nanofaas-control-plane")
    own_resources = {r for rule in own["rules"] for r in rule["resources"]}
    assert own_resources == {"functions", "functions/status", "configmaps"}
