"""The pod template judged by the cluster at start: a dry-run create of a sample Job built from it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fakekube import FakeCluster
from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.server import SchedulerServer

from .conftest import SCHEDULER_USER, BackendMaker, ours

SHIPPED = Path(__file__).parents[4] / "deploy" / "kustomize" / "base" / "function-pod-template.yaml"


def dry_run_creates(cluster: FakeCluster) -> int:
    records = cluster.audit.records(user=SCHEDULER_USER)
    return sum(1 for r in records if (r.verb, r.resource) == ("create", "jobs"))


async def test_the_shipped_template_passes_and_nothing_is_stored(
    make_backend: BackendMaker, cluster: FakeCluster
) -> None:
    backend = await make_backend(start=False, NANOFAAS_K8S_POD_TEMPLATE=str(SHIPPED))
    await backend.check()
    assert dry_run_creates(cluster) == 1  # the cluster was asked
    assert ours(cluster, "jobs", "batch") == []  # and kept nothing


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("spec:\n  hostNetwrk: true\n", 'unknown field "spec.template.spec.hostNetwrk"'),
        (
            "spec:\n  containers:\n    - name: function\n      securityContext: {runAsUser: root}\n",
            "spec.template.spec.containers[0].securityContext.runAsUser",
        ),
        ("spec:\n  containers:\n    - name: proxy\n", "spec.template.spec.containers[1].image"),
    ],
)
async def test_a_template_the_cluster_refuses_is_one_clear_error_naming_the_field(
    make_backend: BackendMaker, tmp_path: Path, template: str, says: str
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(template)
    backend = await make_backend(start=False, NANOFAAS_K8S_POD_TEMPLATE=str(path))
    with pytest.raises(ConfigError) as error:
        await backend.check()
    message = str(error.value)
    assert message.startswith(f"NANOFAAS_K8S_POD_TEMPLATE: {path}: the cluster refuses a Job built from it")
    assert says in message and "\n" not in message, message


async def test_a_cluster_that_cannot_answer_does_not_stop_the_scheduler(
    make_backend: BackendMaker, cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.fail("create", "jobs", status=403)
    backend = await make_backend(start=False, NANOFAAS_K8S_POD_TEMPLATE=str(SHIPPED))
    with caplog.at_level(logging.WARNING):
        await backend.check()
    assert "could not check the pod template" in caplog.text


async def test_no_template_no_check(make_backend: BackendMaker, cluster: FakeCluster) -> None:
    backend = await make_backend(start=False)
    await backend.check()
    assert dry_run_creates(cluster) == 0


async def test_the_scheduler_does_not_start_with_a_refused_template(
    cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kc", user=SCHEDULER_USER)))
    path = tmp_path / "template.yaml"
    path.write_text("spec:\n  hostNetwrk: true\n")
    settings = Settings.from_env(
        {
            "NANOFAAS_BACKEND": "kubernetes",
            "NANOFAAS_K8S_POD_TEMPLATE": str(path),
            "NANOFAAS_SCHEDULER_PORT": "0",
            "NANOFAAS_REGISTRY_ADDRESS": "127.0.0.1:1",
        }
    )
    server = SchedulerServer(settings, metrics_registry=CollectorRegistry())
    with pytest.raises(ConfigError, match="hostNetwrk"):
        await server.start()
    assert server.port == 0  # it never listened
