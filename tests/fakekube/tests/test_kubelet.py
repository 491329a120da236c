"""The kubelet's containers: image pulls, restarts, OOM, liveness, logs, deletion with grace."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fakekube import FakeCluster

from .conftest import condition, container_state, get_json


def _pod(name: str, image: str = "python:3", args: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if args is not None:
        container["args"] = args
    container.update(spec.pop("container", {}))
    return {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}


def _state(cluster: FakeCluster, name: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    pod = cluster.wait_for("pods", "default", name, lambda p: p is not None and predicate(p), timeout=timeout)
    assert pod is not None
    return pod


def _waiting(reason: str) -> Any:
    return lambda p: (container_state(p).get("state") or {}).get("waiting", {}).get("reason") == reason


def _running(p: dict[str, Any]) -> bool:
    return "running" in (container_state(p).get("state") or {})


def test_unpullable_image_backs_off_then_runs_once_available(
    cluster: FakeCluster, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod(
        "default",
        _pod(
            "pull",
            "registry.example/app:2",
            restartPolicy="Never",
            container={"command": [sys.executable, "-c", "print('up')"]},
        ),
    )
    pod = _state(cluster, "pull", _waiting("ErrImagePull"))
    assert pod["status"]["phase"] == "Pending"
    assert "pull access denied" in container_state(pod)["state"]["waiting"]["message"]
    _state(cluster, "pull", _waiting("ImagePullBackOff"))
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log("pull", "default")
    assert waiting.value.status == 400 and "trying and failing to pull image" in waiting.value.body
    cluster.add_image("registry.example/app:2")
    pod = _state(cluster, "pull", lambda p: p["status"].get("phase") == "Succeeded")
    assert core.read_namespaced_pod_log("pull", "default") == "up\n"


def test_blocked_image_fails_even_if_known(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    cluster.block_image("python:3")
    core.create_namespaced_pod("default", _pod("blocked", args=["-c", "pass"]))
    _state(cluster, "blocked", _waiting("ImagePullBackOff"))


def test_crash_loop_restarts_with_back_off(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("crash", args=["-c", "print('boom'); raise SystemExit(2)"]))
    _state(cluster, "crash", _waiting("CrashLoopBackOff"))
    pod = _state(cluster, "crash", lambda p: container_state(p).get("restartCount", 0) >= 2)
    last = container_state(pod)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (2, "Error")
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always keeps it running
    assert core.read_namespaced_pod_log("crash", "default", previous=True) == "boom\n"


def test_oom_kill_is_reported_and_restarted(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("hog", args=["-c", "import time; time.sleep(60)"]))
    _state(cluster, "hog", _running)
    cluster.oom_kill("default", "hog")
    pod = _state(cluster, "hog", lambda p: container_state(p).get("restartCount") == 1)
    oom = container_state(pod)["lastState"]["terminated"]
    assert (oom["exitCode"], oom["reason"]) == (137, "OOMKilled")
    _state(cluster, "hog", _running)


def test_oom_under_restart_never_fails_the_pod(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default", _pod("hog", args=["-c", "import time; time.sleep(60)"], restartPolicy="Never")
    )
    _state(cluster, "hog", _running)
    cluster.oom_kill("default", "hog")
    pod = _state(cluster, "hog", lambda p: p["status"]["phase"] == "Failed")
    assert container_state(pod)["state"]["terminated"]["reason"] == "OOMKilled"


def test_failed_liveness_probe_restarts_the_container(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    probe = {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    core.create_namespaced_pod(
        "default",
        _pod(
            "sick",
            "web:1",
            terminationGracePeriodSeconds=1,
            container={"env": [{"name": "BROKEN_LIVENESS", "value": "1"}], "livenessProbe": probe},
        ),
    )
    pod = _state(cluster, "sick", lambda p: container_state(p).get("restartCount", 0) >= 1)
    # Stopped with SIGTERM: web.py exits 0 from its handler, or 143 if it had not installed it yet.
    assert container_state(pod)["lastState"]["terminated"]["exitCode"] in (0, 143)


def test_startup_probe_gates_readiness(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 30}
    core.create_namespaced_pod(
        "default",
        _pod(
            "slow",
            "web:1",
            container={"env": [{"name": "READY_AFTER", "value": "1.5"}], "startupProbe": probe},
        ),
    )
    pod = _state(cluster, "slow", _running)
    assert container_state(pod)["started"] is False and not condition(pod, "Ready")
    pod = _state(cluster, "slow", lambda p: condition(p, "Ready"))
    assert container_state(pod)["started"] is True


def test_tcp_and_exec_probes(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        _pod("tcp", "web:1", container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}),
    )
    core.create_namespaced_pod(
        "default",
        _pod(
            "exec",
            "busybox:1",
            container={
                "command": ["sleep", "60"],
                "readinessProbe": {"exec": {"command": ["test", "-n", "$(HOSTNAME)"]}, "periodSeconds": 1},
            },
        ),
    )
    _state(cluster, "tcp", lambda p: condition(p, "Ready"))
    _state(cluster, "exec", lambda p: condition(p, "Ready"))


def test_logs_follow_tail_and_timestamps(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    script = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)"
    core.create_namespaced_pod("default", _pod("talk", args=["-c", script], restartPolicy="Never"))
    _state(cluster, "talk", lambda p: _running(p) or p["status"].get("phase") == "Succeeded")
    stream: Any = core.read_namespaced_pod_log("talk", "default", follow=True, _preload_content=False)
    followed = b"".join(stream.stream(decode_content=False)).decode()
    assert followed == "line 0\nline 1\nline 2\n"
    assert core.read_namespaced_pod_log("talk", "default", tail_lines=1) == "line 2\n"
    stamped = core.read_namespaced_pod_log("talk", "default", timestamps=True).splitlines()
    assert stamped[0].endswith("Z line 0") and len(stamped) == 3
    assert core.read_namespaced_pod_log("talk", "default", limit_bytes=4) == "line"


def test_log_errors_name_the_problem(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    pod = _pod("two", args=["-c", "pass"], restartPolicy="Never")
    pod["spec"]["containers"].append({"name": "side", "image": "python:3", "args": ["-c", "pass"]})
    core.create_namespaced_pod("default", pod)
    with pytest.raises(ApiException) as which:
        core.read_namespaced_pod_log("two", "default")
    assert which.value.status == 400 and "choose one of: [main side]" in which.value.body
    with pytest.raises(ApiException) as bad:
        core.read_namespaced_pod_log("two", "default", container="nope")
    assert bad.value.status == 400 and "container nope is not valid" in bad.value.body


def test_graceful_deletion_sends_sigterm_then_sigkill(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("polite", "web:1", terminationGracePeriodSeconds=30))
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
    core.create_namespaced_pod(
        "default", _pod("stubborn", args=["-c", stubborn + "time.sleep(60)"], terminationGracePeriodSeconds=1)
    )
    _state(cluster, "polite", _running)
    _state(cluster, "stubborn", _running)
    # Its handler is in place once it has said so: read that line from a follow stream.
    stream: Any = core.read_namespaced_pod_log("stubborn", "default", follow=True, _preload_content=False)
    assert next(stream.stream(decode_content=False)).startswith(b"up")
    stream.release_conn()
    core.delete_namespaced_pod("polite", "default")
    core.delete_namespaced_pod("stubborn", "default")
    terminating = core.read_namespaced_pod("stubborn", "default")
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.deletion_grace_period_seconds == 1
    cluster.wait_for("pods", "default", "polite", lambda p: p is None, timeout=10)
    cluster.wait_for("pods", "default", "stubborn", lambda p: p is None, timeout=10)
    assert cluster.processes() == []


def test_init_containers_env_sources_and_working_dir(
    cluster: FakeCluster, core: client.CoreV1Api, tmp_path: Path
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"mode": "fast"}})
    core.create_namespaced_secret("default", {"metadata": {"name": "sec"}, "stringData": {"token": "t0k"}})
    marker = tmp_path / "init-ran"
    pod = _pod(
        "full",
        args=[
            "-c",
            "import os; print(os.environ['MODE'], os.environ['TOKEN'], os.environ['cfg_mode'], os.getcwd())",
        ],
        restartPolicy="Never",
        container={
            "workingDir": str(tmp_path),
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "cfg_"}],
        },
    )
    pod["spec"]["initContainers"] = [
        {"name": "init", "image": "busybox:1", "command": ["touch", str(marker)]}
    ]
    core.create_namespaced_pod("default", pod)
    done = _state(cluster, "full", lambda p: p["status"].get("phase") == "Succeeded")
    assert marker.exists() and condition(done, "Initialized")
    assert done["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert core.read_namespaced_pod_log("full", "default") == f"fast t0k fast {tmp_path}\n"


def test_missing_config_map_blocks_the_container(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        _pod(
            "needs",
            args=["-c", "pass"],
            container={
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x"}}}]
            },
        ),
    )
    _state(cluster, "needs", _waiting("CreateContainerConfigError"))


def test_missing_executable_is_a_start_error(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        _pod("noexec", "busybox:1", restartPolicy="Never", container={"command": ["/nonexistent/binary"]}),
    )
    pod = _state(cluster, "noexec", lambda p: p["status"].get("phase") == "Failed")
    terminated = container_state(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)


def test_pod_ips_are_distinct_and_bindable(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    for name in ("a", "b"):
        core.create_namespaced_pod(
            "default",
            _pod(
                name,
                "web:1",
                container={
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
                },
            ),
        )
    ips = {_state(cluster, n, lambda p: condition(p, "Ready"))["status"]["podIP"] for n in ("a", "b")}
    assert len(ips) == 2  # both bound port 8080, each on its own address
    assert {get_json(f"http://{ip}:8080/")["pod"] for ip in ips} == {"a", "b"}


def test_every_process_is_killed_at_teardown(tmp_path: Path) -> None:
    spawner = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('spawned', flush=True)\ntime.sleep(120)\n"
    )
    with FakeCluster(work_dir=tmp_path / "c") as cluster:
        cluster.add_image("python:3", [sys.executable])
        api = client.CoreV1Api(_client(cluster))
        api.create_namespaced_pod("default", _pod("spawn", args=["-c", spawner]))
        cluster.wait_until(lambda: len(cluster.processes()) == 1)
        [leader] = cluster.processes()
        stream: Any = api.read_namespaced_pod_log("spawn", "default", follow=True, _preload_content=False)
        assert next(stream.stream(decode_content=False)).startswith(b"spawned")
        stream.release_conn()
        assert len(_group(leader)) == 2  # the container and the child it started
    assert _group(leader) == []


def _client(cluster: FakeCluster) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def test_pod_active_deadline_fails_the_pod(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        _pod(
            "late", args=["-c", "import time; time.sleep(60)"], activeDeadlineSeconds=1, restartPolicy="Never"
        ),
    )
    pod = _state(cluster, "late", lambda p: p["status"].get("phase") == "Failed")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert cluster.processes() == []
