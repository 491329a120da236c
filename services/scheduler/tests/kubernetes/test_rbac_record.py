"""Every (API group, resource, verb) the backend uses, recorded from the fake cluster's audit.

The record (deploy/kustomize/rbac-record.json) is what the scheduler's Role must grant: the
RBAC work compares its Role with it. This test runs each path of the backend once (start and
reconcile, a JOB attempt, one that fails to start, one whose pod cannot start within the start
bound, a WARM function, its scaling, update and removal)
and fails when the calls differ from the record. After an intended change, regenerate it with
`NANOFAAS_UPDATE_RBAC_RECORD=1 pytest services/scheduler/tests/kubernetes/test_rbac_record.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import orjson

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.logs import LogQuery

from ..conftest import make_attempt
from .conftest import SCHEDULER_USER, BackendMaker, no_jobs_left, runtime_spec

RECORD = Path(__file__).parents[4] / "deploy" / "kustomize" / "rbac-record.json"


async def watches_audited(cluster: FakeCluster) -> None:
    """The fake audits a watch when its stream ends: end them all, then wait (bounded) for the records."""
    await asyncio.to_thread(cluster.drop_watches)
    expected = {("watch", "pods"), ("watch", "endpointslices")}
    async with asyncio.timeout(10):
        # The audit has no event to await: poll it.
        while not expected <= cluster.audit.calls(user=SCHEDULER_USER):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def spec_replicas(cluster: FakeCluster, name: str) -> object:
    deployment = cluster.get("deployments", "default", name, group="apps") or {}
    return (deployment.get("spec") or {}).get("replicas")


async def deployment_replicas(cluster: FakeCluster, name: str, replicas: int) -> None:
    async with asyncio.timeout(10):
        # The patch runs in the background and the fake has no event to await: poll it.
        while spec_replicas(cluster, name) != replicas:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_the_calls_match_the_rbac_record(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend()
    job = await backend.dispatch(make_attempt(runtime_spec(handler_dir), orjson.dumps(1)))
    warm_spec = runtime_spec(handler_dir, name="warm", execution_mode=types_pb2.EXECUTION_MODE_WARM)
    warm = await backend.dispatch(make_attempt(warm_spec, orjson.dumps(2)))
    assert (job.kind, warm.kind) == (OutcomeKind.SUCCESS, OutcomeKind.SUCCESS), (job, warm)
    follow = backend.logs(LogQuery(function="warm", tail=1, follow=True))  # lists, reads, watches pods
    await asyncio.wait_for(anext(follow), 20)
    await follow.aclose()  # type: ignore[attr-defined]
    backend.scale(warm_spec, 2)  # the autoscaler's decision: PATCH deployments/scale
    await deployment_replicas(cluster, "fn-warm", 2)
    broken = runtime_spec(handler_dir, name="broken", env={"HANDLER_MODULE": "no_such_module"})
    failed = await backend.dispatch(make_attempt(broken, orjson.dumps(3)))  # its logs are read
    assert failed.error_code == codes.START_FAILED and "no_such_module" in failed.message, failed
    await backend.function_changed(runtime_spec(handler_dir, name="warm", revision=2))  # now JOB
    await backend.function_removed("fn")
    await no_jobs_left(cluster)
    # A pod that cannot start within the bound: its events are read to say why.
    bounded = await make_backend(NANOFAAS_K8S_START_TIMEOUT_S="1")
    mounts = [types_pb2.SecretMount(name="absent", mount_path="/etc/absent")]
    stuck = await bounded.dispatch(make_attempt(runtime_spec(handler_dir, name="stuck", secrets=mounts)))
    assert stuck.error_code == codes.START_FAILED and "FailedMount" in stuck.message, stuck
    await no_jobs_left(cluster)
    await watches_audited(cluster)

    permissions = cluster.audit.permissions(user=SCHEDULER_USER)
    rules = [
        {"apiGroup": group, "resource": resource, "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(permissions.items())
    ]
    record = {
        "what": "every (apiGroup, resource, verbs) the scheduler's Kubernetes backend calls",
        "generatedBy": "services/scheduler/tests/kubernetes/test_rbac_record.py",
        "rules": rules,
    }
    text = json.dumps(record, indent=2) + "\n"
    if os.environ.get("NANOFAAS_UPDATE_RBAC_RECORD") == "1":
        RECORD.write_text(text)
    assert json.loads(RECORD.read_text())["rules"] == rules, f"calls differ from {RECORD}"
