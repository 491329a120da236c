"""The control plane as one pod: three containers in one network namespace, as sidecars.

The gateway container owns the namespace (here the host's, so its port is on this machine's
loopback and nothing ever goes to a bridge address); the registry and scheduler containers
join it with `network_mode="container:<gateway id>"`, and so does a runtime container that
serves the test's function as an ENDPOINT function (the scheduler image has no runtime in it).
All of them run read-only, with a tmpfs /tmp, as UID 10001.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from testcontainers.core.container import DockerContainer  # type: ignore[import-not-found, unused-ignore]

from .harness import (
    answers,
    exit_code,
    free_port,
    hardened,
    http,
    image_ref,
    logs_of,
    metric,
    probe_function_dir,
    wait_until,
)

FUNCTION = "probe"

# Read from inside a container: the main process's user and what it may write.
SELF_CHECK = """
import json, tempfile
uid = [line.split()[1] for line in open("/proc/1/status") if line.startswith("Uid:")][0]
def writable(d):
    try:
        with tempfile.TemporaryFile(dir=d):
            return True
    except OSError:
        return False
print(json.dumps({"pid1Uid": int(uid), "rootWritable": writable("/"), "tmpWritable": writable("/tmp")}))
"""


@dataclass
class Pod:
    containers: dict[str, DockerContainer]
    ports: dict[str, int]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def metrics(self, service: str) -> str:
        reply = http("GET", f"http://127.0.0.1:{self.ports[service + '-metrics']}/metrics")
        assert reply.status == 200
        return reply.body.decode()

    def alive(self) -> None:
        for name, container in self.containers.items():
            code = exit_code(container)
            assert code is None, f"{name} exited with {code}:\n{logs_of(container)}"

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{logs_of(c)}" for name, c in self.containers.items())


def _service_env(ports: dict[str, int]) -> dict[str, str]:
    """One environment for the three services: each reads its own variables."""
    return {
        "NANOFAAS_GATEWAY_HOST": "127.0.0.1",
        "NANOFAAS_GATEWAY_PORT": str(ports["gateway"]),
        "NANOFAAS_GATEWAY_METRICS_PORT": str(ports["gateway-metrics"]),
        "NANOFAAS_SCHEDULER_HOST": "127.0.0.1",
        "NANOFAAS_SCHEDULER_PORT": str(ports["scheduler"]),
        "NANOFAAS_SCHEDULER_METRICS_PORT": str(ports["scheduler-metrics"]),
        "NANOFAAS_REGISTRY_HOST": "127.0.0.1",
        "NANOFAAS_REGISTRY_PORT": str(ports["registry"]),
        "NANOFAAS_REGISTRY_METRICS_PORT": str(ports["registry-metrics"]),
        "NANOFAAS_SCHEDULER_ADDRESS": f"127.0.0.1:{ports['scheduler']}",
        "NANOFAAS_REGISTRY_ADDRESS": f"127.0.0.1:{ports['registry']}",
        "NANOFAAS_CALLBACK_URL": f"http://127.0.0.1:{ports['gateway']}",
    }


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    function_dir = probe_function_dir(tmp_path_factory.mktemp("pod"))
    names = ("gateway", "scheduler", "registry", "function")
    ports = {name: free_port() for name in (*names, *(f"{n}-metrics" for n in names[:3]))}
    env = _service_env(ports)
    with ExitStack() as stack:
        # The namespace owner first, like a pod's sandbox; the others join it.
        gateway = stack.enter_context(hardened(image_ref("gateway"), "host", env=env))
        shared = f"container:{gateway.get_container_id()}"
        containers = {
            "gateway": gateway,
            "registry": stack.enter_context(hardened(image_ref("registry"), shared, env=env)),
            "scheduler": stack.enter_context(hardened(image_ref("scheduler"), shared, env=env)),
            "function": stack.enter_context(
                hardened(
                    image_ref("python-runtime"),
                    shared,
                    env={"PORT": str(ports["function"]), "HOST": "127.0.0.1"},
                    volumes={function_dir: "/function"},
                )
            ),
        }
        pod = Pod(containers, ports)
        try:
            wait_until(answers(f"{pod.gateway}/readyz"), "the pod's /readyz", alive=pod.alive)
            wait_until(
                answers(f"http://127.0.0.1:{ports['function']}/health"), "the function", alive=pod.alive
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{pod.logs()}") from exc
        yield pod


@pytest.fixture(scope="module")
def probe_function(pod: Pod) -> str:
    spec = {
        "name": FUNCTION,
        "image": image_ref("python-runtime"),
        "executionMode": "ENDPOINT",
        "endpointUrl": f"http://127.0.0.1:{pod.ports['function']}/invoke",
        "timeoutMs": 10000,
    }
    reply = http("POST", f"{pod.gateway}/v1/functions", spec)
    assert reply.status == 201, reply.body
    return FUNCTION


def test_every_container_is_read_only_non_root_in_one_namespace(pod: Pod) -> None:
    gateway_id = pod.containers["gateway"].get_container_id()
    for name, container in pod.containers.items():
        host_config = container.get_wrapped_container().attrs["HostConfig"]
        assert host_config["ReadonlyRootfs"] is True, name
        assert host_config["NetworkMode"] == ("host" if name == "gateway" else f"container:{gateway_id}")
        result = container.exec(["/opt/nanofaas/bin/python", "-c", SELF_CHECK])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output.decode().strip().splitlines()[-1])
        assert report == {"pid1Uid": 10001, "rootWritable": False, "tmpWritable": True}, name


def test_register_and_invoke_sync(pod: Pod, probe_function: str) -> None:
    listed = http("GET", f"{pod.gateway}/v1/functions")
    assert [f["name"] for f in listed.json()] == [probe_function]
    reply = http("POST", f"{pod.gateway}/v1/functions/{probe_function}:invoke", {"input": {"sync": 1}})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["status"] == "success"
    assert body["output"]["input"] == {"sync": 1}
    # Served by the runtime container: non-root, read-only root.
    assert (body["output"]["uid"], body["output"]["rootWritable"]) == (10001, False)


def test_invoke_async(pod: Pod, probe_function: str) -> None:
    reply = http("POST", f"{pod.gateway}/v1/functions/{probe_function}:enqueue", {"input": {"async": 2}})
    assert reply.status == 202, reply.body
    execution = f"{pod.gateway}/v1/executions/{reply.json()['executionId']}"
    wait_until(lambda: http("GET", execution).json()["status"] not in ("queued", "running"), "the execution")
    status = http("GET", execution).json()
    assert status["status"] == "success", status
    assert status["output"]["input"] == {"async": 2}


def test_metrics_of_all_three(pod: Pod, probe_function: str) -> None:
    reply = http("POST", f"{pod.gateway}/v1/functions/{probe_function}:invoke", {"input": "m"})
    assert reply.status == 200, reply.body
    gateway = pod.metrics("gateway")
    invoked = metric(
        gateway, "gateway_requests_total", route="/v1/functions/{name}:invoke", method="POST", status="200"
    )
    assert invoked is not None and invoked >= 1, [s for s in gateway.splitlines() if "requests_total" in s]
    succeeded = metric(pod.metrics("scheduler"), "function_success_total", function=probe_function)
    assert succeeded is not None and succeeded >= 1
    assert metric(pod.metrics("registry"), "registry_functions") == 1


def test_readyz_follows_the_scheduler_container(pod: Pod, probe_function: str) -> None:
    ready = f"{pod.gateway}/readyz"
    assert http("GET", ready).status == 200
    scheduler = pod.containers["scheduler"].get_wrapped_container()
    scheduler.stop(timeout=30)
    scheduler.reload()
    # SIGTERM reached the service as PID 1 and it shut down cleanly (a SIGKILL would be 137).
    assert scheduler.attrs["State"]["ExitCode"] == 0, logs_of(pod.containers["scheduler"])
    wait_until(answers(ready, 503), "/readyz to answer 503")
    unready = http("GET", ready)
    assert "scheduler" in unready.json()["error"]["message"]

    scheduler.start()
    wait_until(answers(ready), "/readyz to answer 200 again", alive=pod.alive)
    reply = http("POST", f"{pod.gateway}/v1/functions/{probe_function}:invoke", {"input": "back"})
    assert reply.status == 200, reply.body
    assert reply.json()["output"]["input"] == "back"
