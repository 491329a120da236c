"""WARM mode on the fake cluster: a Deployment + Service per function, requests to ready pod endpoints."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import ReplicaCounts
from nanofaas_scheduler.dispatch.kubernetes import naming

from ..conftest import RecordingObserver, make_attempt
from .conftest import Arrivals, BackendMaker, ReplicaChanges, ours, runtime_spec, wait_off_loop


def warm_spec(handler_dir: Path, **fields: Any) -> types_pb2.FunctionSpec:
    return runtime_spec(handler_dir, **{"execution_mode": types_pb2.EXECUTION_MODE_WARM, **fields})


def ready_pods(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [
        pod
        for pod in ours(cluster, "pods")
        if not pod["metadata"].get("deletionTimestamp")
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or ()
        )
    ]


async def test_requests_go_to_ready_pods_spread_by_load(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend()
    events = RecordingObserver()
    backend.attach(events)
    spec = warm_spec(handler_dir, concurrency=2, min_replicas=2)  # one request per pod at a time
    await backend.function_changed(spec)
    deployment = cluster.get("deployments", "default", "fn-fn", group="apps")
    assert deployment is not None and cluster.get("services", "default", "fn-fn") is not None
    assert deployment["metadata"]["labels"][naming.COMPONENT] == naming.COMPONENT_WARM
    outcomes = await asyncio.gather(
        *(backend.dispatch(make_attempt(spec, orjson.dumps("slow"), timeout=60)) for _ in range(4))
    )
    assert all(o.kind is OutcomeKind.SUCCESS for o in outcomes), outcomes
    outputs = [orjson.loads(o.output) for o in outcomes]
    pods = [out["pod"] for out in outputs]
    assert len(set(pods)) == 2 and all(pods.count(p) == 2 for p in set(pods))
    for pod in set(pods):  # never two at once on one pod
        first, second = sorted((out["started"], out["ended"]) for out in outputs if out["pod"] == pod)
        assert first[1] <= second[0]
    assert events.replicas["fn"] == 2


async def test_a_pod_dying_mid_request_is_a_crash(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path, arrivals: Arrivals
) -> None:
    backend = await make_backend()
    env = {"PYTHONPATH": str(handler_dir), "NOTIFY_PORT": str(arrivals.port)}
    spec = warm_spec(handler_dir, concurrency=1, env=env)
    assert (
        await backend.dispatch(make_attempt(spec, orjson.dumps(0), timeout=60))
    ).kind is OutcomeKind.SUCCESS
    pending = asyncio.ensure_future(backend.dispatch(make_attempt(spec, orjson.dumps("sleep"), timeout=60)))
    await arrivals.wait()
    pod = ready_pods(cluster)[0]["metadata"]["name"]
    await asyncio.to_thread(cluster.kill_pod, "default", pod, None, signal.SIGKILL)
    outcome = await asyncio.wait_for(pending, 20)
    assert outcome.kind is OutcomeKind.CRASH, outcome
    # The retry does not go back to the dead address before the kubelet has had its say.
    again = await backend.dispatch(make_attempt(spec, orjson.dumps(1), timeout=60))
    assert again.kind is OutcomeKind.SUCCESS, again


async def test_an_update_rolls_without_failed_requests_and_delete_removes_everything(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend()
    spec = warm_spec(handler_dir, concurrency=1)
    assert (
        await backend.dispatch(make_attempt(spec, orjson.dumps(0), timeout=60))
    ).kind is OutcomeKind.SUCCESS
    old = {pod["metadata"]["name"] for pod in ready_pods(cluster)}
    updated = warm_spec(
        handler_dir, concurrency=1, revision=2, env={"PYTHONPATH": str(handler_dir), "V": "2"}
    )
    await backend.function_changed(updated)
    outcomes: list[Outcome] = []

    def rolled() -> bool:
        pods = ready_pods(cluster)
        return bool(pods) and not old & {pod["metadata"]["name"] for pod in pods}

    async def traffic() -> None:
        while not rolled():
            outcomes.append(await backend.dispatch(make_attempt(updated, orjson.dumps(1), timeout=30)))

    await asyncio.wait_for(traffic(), 40)
    assert outcomes and all(o.kind is OutcomeKind.SUCCESS for o in outcomes), outcomes
    deployment = cluster.get("deployments", "default", "fn-fn", group="apps")
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["annotations"][naming.REVISION_ANNOTATION] == "2"

    await backend.function_removed("fn")
    await wait_off_loop(
        cluster,
        lambda: not ours(cluster, "deployments", "apps") and not ours(cluster, "services"),
        "the Deployment and Service deleted",
    )
    await wait_off_loop(cluster, lambda: not ours(cluster, "pods"), "every pod deleted")


async def test_a_restarted_scheduler_adopts_known_and_deletes_unknown_functions(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    first = await make_backend()
    known, unknown = warm_spec(handler_dir, name="known"), warm_spec(handler_dir, name="unknown")
    await first.function_changed(known)
    await first.function_changed(unknown)

    def known_ready_uids() -> set[str]:
        return {
            pod["metadata"]["uid"]
            for pod in ready_pods(cluster)
            if pod["metadata"]["name"].startswith("fn-known-")
        }

    await wait_off_loop(cluster, lambda: bool(known_ready_uids()), "the known function's pod ready")
    warm_uids = known_ready_uids()
    await first.close()  # the WARM objects stay behind for the next scheduler
    assert {d["metadata"]["name"] for d in ours(cluster, "deployments", "apps")} == {"fn-known", "fn-unknown"}

    second = await make_backend(NANOFAAS_K8S_ADOPT_GRACE_S="1")
    await second.function_changed(known)
    await wait_off_loop(
        cluster,
        lambda: (
            {d["metadata"]["name"] for d in ours(cluster, "deployments", "apps")} == {"fn-known"}
            and {s["metadata"]["name"] for s in ours(cluster, "services")} == {"fn-known"}
        ),
        "only the known function's objects left",
    )
    outcome = await second.dispatch(make_attempt(known, orjson.dumps(5), timeout=60))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert known_ready_uids() == warm_uids  # adopted: no pod restarted, no cold start


async def test_warm_pods_that_cannot_start_fail_requests_at_once(
    make_backend: BackendMaker, handler_dir: Path
) -> None:
    backend = await make_backend()
    missing = warm_spec(handler_dir, name="noimage", image="registry.example/missing:2")
    outcome = await backend.dispatch(make_attempt(missing, timeout=60))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR and outcome.error_code == codes.START_FAILED, outcome
    assert "registry.example/missing:2" in outcome.message

    broken = warm_spec(handler_dir, name="broken", env={"HANDLER_MODULE": "no_such_module"})
    outcome = await backend.dispatch(make_attempt(broken, timeout=60))
    assert outcome.kind is OutcomeKind.CRASH and outcome.error_code == codes.START_FAILED, outcome
    assert "CrashLoopBackOff" in outcome.message and "no_such_module" in outcome.message


def deployment_replicas(cluster: FakeCluster, name: str) -> object:
    deployment = cluster.get("deployments", "default", naming.function_object_name(name), group="apps")
    return ((deployment or {}).get("spec") or {}).get("replicas")


async def test_scale_patches_the_deployment_and_a_request_at_zero_waits_for_a_pod(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend()
    events = ReplicaChanges()
    backend.attach(events)
    spec = warm_spec(handler_dir, concurrency=2, min_replicas=0)
    await backend.function_changed(spec)
    assert deployment_replicas(cluster, "fn") == 0  # created at minReplicas
    assert backend.replicas(spec) == ReplicaCounts(0, 0, 0, 0, 2)
    backend.scale(spec, 2)
    await wait_off_loop(
        cluster, lambda: len(ready_pods(cluster)) == 2 and deployment_replicas(cluster, "fn") == 2, "2 pods"
    )
    backend.scale(spec, 0)
    await wait_off_loop(
        cluster, lambda: not ready_pods(cluster) and deployment_replicas(cluster, "fn") == 0, "0"
    )
    await events.until("fn", 0)  # the backend's view too: its EndpointSlice watch may lag the cluster
    # The request meets zero pods: it waits (within its deadline) for the replica the next decision asks for.
    pending = asyncio.ensure_future(backend.dispatch(make_attempt(spec, orjson.dumps(1), timeout=60)))
    await asyncio.sleep(0)
    backend.scale(spec, 1)
    outcome = await asyncio.wait_for(pending, 60)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.message
    assert [name for name, _ in events.cold_starts] == ["fn"]  # the wait for the first pod
    assert backend.replicas(spec).desired == 1
