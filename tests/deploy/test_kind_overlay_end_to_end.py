"""The kind overlay, applied to the fake cluster, runs the real platform end to end.

`kubectl apply --server-side -k` of overlays/kind (plus one test patch: the OTLP endpoint
points at a receiver this test runs in place of Jaeger) against tests/fakekube with its pod
network (a network namespace per pod, kubelet/network.py). The Deployment's pod then runs the
REAL gateway, scheduler and registry, sharing the pod's network namespace so they talk over
its localhost as the manifests say — in two variants: `processes` (this machine's interpreter
runs what each nanofaas/*:dev image's ENTRYPOINT runs) and `containers` (the images themselves,
run by docker; skipped without an engine or the images). The kubelet mounts what the pod spec
asks for (the function pod template ConfigMap at /etc/nanofaas, emptyDirs at /tmp, a read-only
root) and the ServiceAccount token, ca.crt and namespace at
/var/run/secrets/kubernetes.io/serviceaccount, and sets KUBERNETES_SERVICE_HOST/PORT to the API
server's in-cluster address (HTTPS, a certificate for that address): so the scheduler and the
registry use in-cluster config, and the audit proves their requests carry the ServiceAccount's
token. Probes are the manifests' own (HTTP for the gateway, native gRPC for the others) and
gate readiness.

Then, through the pod's REST port (a port-forward): a WARM and a JOB function are registered
(stored by the registry as Function custom resources) and invoked; the scheduler starts their
pods through the API, the kubelet runs them (the runtime with the e2e suite's handlers, in
pods of their own), and the scheduler calls them over the pod network. Each invocation's trace
reaches the receiver with spans of the gateway and the scheduler. Every request the control
plane made is granted by the overlay's Role (test_rbac.py compares the Role with the backend's
recorded calls; this checks a real run needs no more).

Needs root (network namespaces) and iproute2; skips without them. Teardown stops the cluster
(every process group killed, every container removed) and checks that no network namespace or
container of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakekube import FakeCluster
from fakekube.kubelet.engine import CLUSTER_LABEL, image_present

from .conftest import KUSTOMIZE, kubectl_path

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "nanofaas"
SERVICE_ACCOUNT_USER = "system:serviceaccount:nanofaas:nanofaas-control-plane"
RUNTIME_IMAGE = "nanofaas/python-runtime:dev"
FUNCTIONS_DIR = ROOT / "tests" / "e2e" / "functions"
SERVICES = ("gateway", "scheduler", "registry")
SERVICE_IMAGES = tuple(f"nanofaas/{service}:dev" for service in SERVICES)
FUNCTION_IMAGE = "nanofaas-test/echo-function:dev"
START_S = 90.0  # three services and their probes on a loaded 2-core machine
CALL_S = 60.0


def _problem() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (a network namespace per pod)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip netns`)"
    if importlib.util.find_spec("grpc") is None or importlib.util.find_spec("opentelemetry.proto") is None:
        return "needs grpcio and opentelemetry-proto (the OTLP receiver)"
    return None


def _platform_problem() -> str | None:
    modules = ("nanofaas_gateway", "nanofaas_scheduler", "nanofaas_registry", "nanofaas_runtime")
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    return f"needs the platform installed ({', '.join(missing)} missing)" if missing else None


pytestmark = pytest.mark.skipif(_problem() is not None, reason=str(_problem()))


def _load_receiver_module() -> Any:
    """tests/e2e/otlp_receiver.py, the suite's OTLP/gRPC receiver (no package to import it from)."""
    spec = importlib.util.spec_from_file_location(
        "otlp_receiver", ROOT / "tests" / "e2e" / "otlp_receiver.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass
class Traces:
    """The OTLP receiver, served by an event loop of its own on a thread (the test is synchronous)."""

    loop: asyncio.AbstractEventLoop
    receiver: Any
    port: int

    def wait_for_trace(self, trace_id: str, services: set[str], timeout: float = 30.0) -> set[str]:
        def arrived(spans: list[Any]) -> bool:
            return services <= {s.service for s in spans if s.trace_id == trace_id}

        future = asyncio.run_coroutine_threadsafe(self.receiver.wait_for(arrived, timeout), self.loop)
        with contextlib.suppress(TimeoutError):  # the caller's assertion says what arrived
            future.result(timeout + 5)
        return {s.service for s in self.receiver.spans if s.trace_id == trace_id}


@pytest.fixture
def traces() -> Iterator[Traces]:
    module = _load_receiver_module()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="otlp receiver", daemon=True)
    thread.start()
    server, receiver, port = asyncio.run_coroutine_threadsafe(module.start_receiver(), loop).result(30)
    try:
        yield Traces(loop, receiver, port)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        return "the docker engine does not answer"
    missing = [ref for ref in (*SERVICE_IMAGES, RUNTIME_IMAGE) if not image_present(ref)]
    return f"images missing: {', '.join(missing)} (run `make images`)" if missing else None


@dataclass(frozen=True)
class Runtime:
    """How the cluster runs the images, and the function image the test registers."""

    name: str
    function_image: str
    function_env: dict[str, str]


@pytest.fixture(scope="module")
def function_image() -> Iterator[str]:
    """nanofaas/python-runtime:dev with the suite's handlers in it, built offline for this module."""
    context = Path(tempfile.mkdtemp(prefix="nanofaas-function-"))
    try:
        shutil.copy(FUNCTIONS_DIR / "handlers.py", context / "handlers.py")
        (context / "Dockerfile").write_text(
            f"FROM {RUNTIME_IMAGE}\nCOPY handlers.py /opt/function/handlers.py\n"
            "ENV PYTHONPATH=/opt/function HANDLER_MODULE=handlers\n"
        )
        subprocess.run(
            ["docker", "build", "--quiet", "--network", "none", "--tag", FUNCTION_IMAGE, str(context)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    try:
        yield FUNCTION_IMAGE
    finally:
        subprocess.run(["docker", "image", "rm", "--force", FUNCTION_IMAGE], capture_output=True, check=False)


@pytest.fixture(params=["processes", "containers"])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    """processes: the platform installed here stands in for the images; containers: the images.

    Without an engine or the images, the containers variant skips, unless both CI and
    NANOFAAS_E2E_CONTAINERS=required are set (the tox env `containers`, which builds the images
    first): then it fails, as the container suite does.
    """
    if request.param == "processes":
        problem = _platform_problem()
        if problem is not None:
            pytest.skip(f"processes: {problem}")
        env = {"PYTHONPATH": str(FUNCTIONS_DIR), "HANDLER_MODULE": "handlers"}
        return Runtime("processes", RUNTIME_IMAGE, env)
    problem = _engine_problem()
    if problem is not None:
        if os.environ.get("CI") and os.environ.get("NANOFAAS_E2E_CONTAINERS") == "required":
            pytest.fail(f"CI is set and NANOFAAS_E2E_CONTAINERS=required, but: {problem}")
        pytest.skip(f"containers: {problem}")
    return Runtime("containers", request.getfixturevalue("function_image"), {})


@pytest.fixture
def cluster(tmp_path: Path, runtime: Runtime) -> Iterator[FakeCluster]:
    running = FakeCluster(pod_network=True, work_dir=tmp_path / "cluster").start()
    network = running.network
    assert network is not None
    try:
        if runtime.name == "containers":
            for ref in (*SERVICE_IMAGES, runtime.function_image):
                running.add_engine_image(ref)
        else:
            bin_dir = str(Path(sys.executable).parent)
            env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}
            # What each image's ENTRYPOINT runs (services/*/Dockerfile, runtimes/python/Dockerfile).
            for service, ref in zip(SERVICES, SERVICE_IMAGES, strict=True):
                running.add_image(ref, [sys.executable, "-m", f"nanofaas_{service}"], env=env)
            running.add_image(RUNTIME_IMAGE, [sys.executable, "-m", "nanofaas_runtime"], env=env)
        yield running
    finally:
        running.stop()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        assert network.name not in left, f"network namespaces left behind:\n{left}"
        if runtime.name == "containers":
            label = f"label={CLUSTER_LABEL}={network.name}"
            listed = subprocess.run(
                ["docker", "ps", "--all", "--quiet", "--filter", label],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            assert not listed, f"containers left behind: {listed}"


def hardening(container: str) -> tuple[str, bool, list[str], list[str]]:
    """A container's user, read-only root, dropped capabilities and security options."""
    found = json.loads(
        subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    )[0]
    host = found["HostConfig"]
    return found["Config"]["User"], host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]


def engine_containers(cluster: FakeCluster) -> dict[str, str]:
    """name -> image of the running containers of this cluster (containers runtime)."""
    assert cluster.network is not None
    label = f"label={CLUSTER_LABEL}={cluster.network.name}"
    listed = subprocess.run(
        ["docker", "ps", "--filter", label, "--format", "{{.Names}} {{.Image}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split("\n")
    return dict(line.split(" ", 1) for line in listed if line)


def kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [kubectl_path(), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def write_overlay(directory: Path, otlp_address: str) -> Path:
    """overlays/kind plus the test's one patch: traces go to the test's receiver."""
    directory.mkdir(parents=True)
    kind = os.path.relpath(KUSTOMIZE / "overlays" / "kind", directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{json.dumps(kind)}]\n"
        "configMapGenerator:\n"
        "  - name: nanofaas-common\n"
        "    behavior: merge\n"
        "    literals:\n"
        f"      - OTEL_EXPORTER_OTLP_ENDPOINT=http://{otlp_address}\n"
        "      - OTEL_BSP_SCHEDULE_DELAY=100\n"
    )
    return directory


def control_plane_pod(cluster: FakeCluster) -> dict[str, Any] | None:
    pods = [
        p
        for p in cluster.objects("pods", NAMESPACE)
        if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "control-plane"
    ]
    return pods[0] if len(pods) == 1 else None


def ready(pod: dict[str, Any] | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def startup_failure(pod: dict[str, Any] | None) -> str | None:
    """A container that stopped or restarts: the control plane will not come up."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("restartCount") or "terminated" in (status.get("state") or {}):
            return str(status["name"])
    return None


def describe(cluster: FakeCluster, kubeconfig: Path) -> str:
    """The control-plane pod's container states and each container's last output (for failures)."""
    pod = control_plane_pod(cluster)
    if pod is None:
        return "no control-plane pod"
    lines = [json.dumps((pod.get("status") or {}).get("containerStatuses"), indent=1)]
    for service in SERVICES:
        logs = ["logs", pod["metadata"]["name"], "-c", service, "--tail", "30"]
        done = subprocess.run(
            [kubectl_path(), "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, *logs],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        lines.append(f"--- {service}\n{done.stdout}{done.stderr}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: Any


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=CALL_S) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status, headers, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return Reply(error.code, headers, json.loads(error.read() or b"null"))


def function_spec(name: str, mode: str, runtime: Runtime) -> dict[str, Any]:
    return {
        "name": name,
        "image": runtime.function_image,
        "executionMode": mode,
        "timeoutMs": 60000,
        "env": {**runtime.function_env, "HANDLER_FUNCTION": "echo"},
    }


@pytest.mark.timeout(600)
def test_the_kind_overlay_runs_the_platform(
    cluster: FakeCluster, runtime: Runtime, traces: Traces, tmp_path: Path
) -> None:
    otlp = cluster.expose_host_port(traces.port)
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", user="deployer")
    kubectl(kubeconfig, "apply", "--server-side", "-k", str(write_overlay(tmp_path / "overlay", otlp)))

    def up() -> bool:
        pod = control_plane_pod(cluster)
        failed = startup_failure(pod)
        if failed is not None:
            logs = kubectl(kubeconfig, "-n", NAMESPACE, "logs", pod["metadata"]["name"], "-c", failed)  # type: ignore[index]
            raise AssertionError(f"container {failed} of the control plane stopped:\n{logs[-4000:]}")
        return ready(pod)

    try:
        cluster.wait_until(up, timeout=START_S, message="the control-plane pod Ready (its three probes)")
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{describe(cluster, kubeconfig)}") from None
    pod = control_plane_pod(cluster)
    assert pod is not None
    if runtime.name == "containers":  # the three services run as containers of their images
        running = engine_containers(cluster)
        images = sorted(image for name, image in running.items() if not name.endswith("-pause"))
        assert images == sorted(SERVICE_IMAGES), running
        for name in running:  # each with the manifests' security context
            if not name.endswith("-pause"):
                assert hardening(name) == ("10001:10001", True, ["ALL"], ["no-new-privileges"]), name
    base = f"http://127.0.0.1:{cluster.port_forward(NAMESPACE, pod['metadata']['name'], 8080)}"
    assert call("GET", f"{base}/readyz").status == 200

    for name, mode in (("echo-warm", "WARM"), ("echo-job", "JOB")):
        created = call("POST", f"{base}/v1/functions", function_spec(name, mode, runtime))
        assert created.status == 201, created.body
        reply = call("POST", f"{base}/v1/functions/{name}:invoke", {"input": {"mode": mode}})
        assert reply.status == 200, reply.body
        assert reply.body["output"]["input"] == {"mode": mode}, reply.body
        execution = call("GET", f"{base}/v1/executions/{reply.headers['x-execution-id']}")
        trace_id = str(execution.body["traceId"])
        assert len(trace_id) == 32, execution.body
        wanted = {"nanofaas-gateway", "nanofaas-scheduler"}
        assert wanted <= traces.wait_for_trace(trace_id, wanted), f"{mode}: spans of {trace_id} missing"

    if runtime.name == "containers":  # the WARM function's pod runs as a container of its image
        assert runtime.function_image in engine_containers(cluster).values()
    # The registry kept both functions as Function custom resources (its kubernetes store).
    stored = {f["metadata"]["name"] for f in cluster.objects("functions", NAMESPACE, group="nanofaas.io")}
    assert {"echo-warm", "echo-job"} <= stored, stored
    # The function pods ran in the cluster: a WARM Deployment's pod and a JOB's pod, the
    # scheduler's doing through the API.
    assert cluster.get("deployments", NAMESPACE, "fn-echo-warm", group="apps") is not None
    role = cluster.get("roles", NAMESPACE, "nanofaas-control-plane", group="rbac.authorization.k8s.io")
    assert role is not None

    # Watches are audited when they end: stop the cluster (the fixture's teardown is then a no-op
    # but for its leak check), then read what the control plane did with its in-cluster token.
    cluster.stop()
    calls = cluster.audit.calls(user=SERVICE_ACCOUNT_USER)
    users = {r.user for r in cluster.audit.records()}
    assert calls, f"no request with the ServiceAccount's token; users seen: {users}"
    expected = {
        ("create", "jobs"),  # the JOB attempt (scheduler)
        ("patch", "deployments"),  # the WARM function's Deployment, by server-side apply
        ("watch", "endpointslices"),  # its ready pod addresses
        ("watch", "pods"),  # the failure detector
        ("create", "functions"),  # the registry's kubernetes store
    }
    assert expected <= calls, f"{sorted(calls)}"
    # Everything it did, the overlay's Role grants.
    assert cluster.audit.uncovered(role["rules"], user=SERVICE_ACCOUNT_USER) == set()
