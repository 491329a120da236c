"""Pods that cannot start end their work after a bound, with the reason, never at the deadline.

A Secret volume that cannot be mounted keeps a pod ContainerCreating (the kubelet records a
FailedMount event); a nodeSelector no node matches keeps it Unschedulable. JOB attempts end
after NANOFAAS_K8S_START_TIMEOUT_S (resp. the unschedulable bound) as START_FAILED naming why;
WARM requests fail fast the same way while no pod of the function is ready, and are served
again once one is.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import kubernetes
import orjson

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes.pods import not_started_reason

from ..conftest import make_attempt
from .conftest import BackendMaker, ReadyReplicas, no_jobs_left, runtime_spec

MISSING_SECRET = 'secret "db-creds" not found'


def _core(cluster: FakeCluster) -> Any:
    new_client: Any = kubernetes.config.new_client_from_config  # untyped
    return kubernetes.client.CoreV1Api(new_client(str(cluster.kubeconfig)))


async def _create_secret(cluster: FakeCluster) -> None:
    secret = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name="db-creds"), string_data={"password": "x"}
    )
    await asyncio.to_thread(_core(cluster).create_namespaced_secret, "default", secret)


def _with_secret_volume(handler_dir: Path, **fields: Any) -> types_pb2.FunctionSpec:
    return runtime_spec(
        handler_dir, secrets=[types_pb2.SecretMount(name="db-creds", mount_path="/etc/db")], **fields
    )


async def test_a_job_pod_stuck_creating_ends_after_the_start_bound_naming_the_mount(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend(NANOFAAS_K8S_START_TIMEOUT_S="2")
    spec = _with_secret_volume(handler_dir)
    started = time.monotonic()
    outcome = await backend.dispatch(make_attempt(spec, timeout=60))
    assert time.monotonic() - started < 30  # the bound, not the 60 s deadline
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome  # not retried
    assert outcome.error_code == codes.START_FAILED
    assert "not ready after 2s" in outcome.message
    assert "ContainerCreating" in outcome.message
    assert "FailedMount" in outcome.message and MISSING_SECRET in outcome.message
    await no_jobs_left(cluster)

    await _create_secret(cluster)  # the kubelet mounts it now
    outcome = await backend.dispatch(make_attempt(spec, orjson.dumps("hi"), timeout=60))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    await no_jobs_left(cluster)


async def test_warm_requests_fail_fast_while_no_pod_can_be_scheduled_and_recover(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend()  # the unschedulable bound is 1 s in these tests
    ready = ReadyReplicas()
    backend.attach(ready)
    spec = runtime_spec(
        handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, node_selector={"pool": "late"}
    )
    started = time.monotonic()
    waiting = await backend.dispatch(make_attempt(spec, timeout=60))  # queued before the bound
    assert time.monotonic() - started < 30
    assert waiting.kind is OutcomeKind.FUNCTION_ERROR, waiting
    assert waiting.error_code == codes.START_FAILED
    assert "Unschedulable" in waiting.message and "node" in waiting.message
    again = await backend.dispatch(make_attempt(spec, timeout=60))  # new ones fail at once
    assert again.error_code == codes.START_FAILED and "Unschedulable" in again.message

    node = cluster.node_names[0]
    await asyncio.to_thread(_core(cluster).patch_node, node, {"metadata": {"labels": {"pool": "late"}}})
    await asyncio.wait_for(ready.reached.wait(), 30)  # the backend saw a ready endpoint
    outcome = await backend.dispatch(make_attempt(spec, orjson.dumps("hi"), timeout=60))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome  # a pod is ready: served again


async def test_warm_requests_fail_fast_when_the_pods_cannot_mount_a_secret(
    make_backend: BackendMaker, handler_dir: Path
) -> None:
    backend = await make_backend(NANOFAAS_K8S_START_TIMEOUT_S="2")
    spec = _with_secret_volume(handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM)
    outcome = await backend.dispatch(make_attempt(spec, timeout=60))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome
    assert outcome.error_code == codes.START_FAILED
    assert "not ready after 2s" in outcome.message and MISSING_SECRET in outcome.message


def test_the_reason_names_scheduling_waiting_containers_and_warning_events() -> None:
    pod = {
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {"name": "function", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ],
        },
    }
    events = [
        {"type": "Normal", "reason": "Scheduled", "message": "assigned"},
        {
            "type": "Warning",
            "reason": "FailedMount",
            "message": "m1",
            "lastTimestamp": "2026-01-01T00:00:01Z",
        },
        {
            "type": "Warning",
            "reason": "FailedMount",
            "message": "m1",
            "lastTimestamp": "2026-01-01T00:00:03Z",
        },
        {"type": "Warning", "reason": "Unhealthy", "message": "m2", "lastTimestamp": "2026-01-01T00:00:02Z"},
    ]
    assert not_started_reason(pod, events) == (
        "container function waiting: ContainerCreating; FailedMount: m1; Unhealthy: m2"
    )
    unscheduled = {
        "spec": {},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}
            ]
        },
    }
    assert not_started_reason(unscheduled, []) == "Unschedulable: 0/1 nodes"
    running = {
        "spec": {"nodeName": "n1"},
        "status": {"containerStatuses": [{"name": "function", "ready": False, "state": {"running": {}}}]},
    }
    assert "running but not ready" in not_started_reason(running, [])
    assert "no pod was created" in not_started_reason(None, [])
