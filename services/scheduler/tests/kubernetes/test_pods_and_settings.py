"""The pod judge (pure) and the kubernetes backend's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes.pods import judge


def pod(
    phase: str = "Pending", *, waiting: str = "", terminated: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting, "message": "back-off pulling"}
    if terminated is not None:
        state["terminated"] = terminated
    container = {"name": "function", "image": "acme/fn:1", "state": state or {"running": {}}}
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "function", "image": "acme/fn:1"}]},
        "status": {"phase": phase, "containerStatuses": [container], **status},
    }


READY = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]


@pytest.mark.parametrize(
    "reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"]
)
def test_start_failures_end_the_attempt_unretried_naming_reason_and_image(reason: str) -> None:
    ended = judge(pod(waiting=reason)).ended
    assert ended is not None and ended.kind is OutcomeKind.FUNCTION_ERROR
    assert ended.error_code == codes.START_FAILED
    assert reason in ended.message and "acme/fn:1" in ended.message


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"phase": "Running", "terminated": {"reason": "OOMKilled", "exitCode": 137}}, "OOMKilled"),
        ({"phase": "Running", "terminated": {"reason": "Error", "exitCode": 143}}, "SIGTERM"),
        ({"phase": "Running", "terminated": {"reason": "Error", "exitCode": 3}}, "exited with code 3"),
        ({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, "pod Evicted: low on memory"),
        ({"phase": "Failed", "reason": "NodeLost"}, "NodeLost"),
    ],
)
def test_deaths_are_crashes(kwargs: dict[str, Any], says: str) -> None:
    ended = judge(pod(**kwargs)).ended
    assert ended is not None and ended.kind is OutcomeKind.CRASH and ended.error_code == codes.CRASH
    assert says in ended.message


def test_ready_and_unschedulable_and_deleted() -> None:
    assert judge(pod("Running", conditions=READY, podIP="10.0.0.7")).ready_ip == "10.0.0.7"
    assert judge(pod("Running", conditions=READY)).ready_ip == ""  # no IP yet
    unschedulable = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
    ]
    assert judge(pod(conditions=unschedulable)).unschedulable == "0/3 nodes"
    deleted = pod("Running", conditions=READY, podIP="10.0.0.7")
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ended = judge(deleted).ended
    assert ended is not None and ended.kind is OutcomeKind.CRASH


def test_kubernetes_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"NANOFAAS_BACKEND": "kubernetes", "NANOFAAS_K8S_NAMESPACE": "fns"})
    assert (settings.backend, settings.k8s_namespace, settings.k8s_image_pull_policy) == (
        "kubernetes",
        "fns",
        "IfNotPresent",
    )
    with pytest.raises(
        ConfigError, match=r"^NANOFAAS_K8S_IMAGE_PULL_POLICY: must be one of IfNotPresent, Always, Never"
    ):
        Settings.from_env({"NANOFAAS_K8S_IMAGE_PULL_POLICY": "sometimes"})
    with pytest.raises(ConfigError, match=r"^NANOFAAS_K8S_JOB_TTL_S: must be an integer between 0 and 86400"):
        Settings.from_env({"NANOFAAS_K8S_JOB_TTL_S": "-1"})
    bad = tmp_path / "template.yaml"
    for text, says in (
        ("spec: [1]", "spec must be a PodSpec mapping"),
        ("metadata: {name: x}", "metadata may hold only labels and annotations"),
        ("kind: Pod\nstatus: {}", "unknown top-level field(s) status"),
        ("spec: {a: [", "not valid YAML"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=r"^NANOFAAS_K8S_POD_TEMPLATE: ") as error:
            Settings.from_env({"NANOFAAS_BACKEND": "kubernetes", "NANOFAAS_K8S_POD_TEMPLATE": str(bad)})
        assert says in str(error.value) and "\n" not in str(error.value)  # one line
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env(
            {"NANOFAAS_BACKEND": "kubernetes", "NANOFAAS_K8S_POD_TEMPLATE": str(tmp_path / "no")}
        )
