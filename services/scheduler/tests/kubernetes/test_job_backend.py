"""JOB mode on the fake cluster: one Job per attempt, results in-band, the pod watch as failure detector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kubernetes
import orjson
from prometheus_client import CollectorRegistry

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend

from ..conftest import RecordingObserver, make_attempt
from .conftest import BackendMaker, no_jobs_left, ours, runtime_spec, wait_off_loop


async def test_a_job_attempt_returns_in_band(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    registry = CollectorRegistry()
    backend = await make_backend(registry)
    events = RecordingObserver()
    backend.attach(events)
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("hello"))
    outcome = await backend.dispatch(attempt)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    output = orjson.loads(outcome.output)
    assert output["input"] == "hello"
    assert output["execution"] == attempt.execution_id
    assert output["attempt"] == "1"
    assert [name for name, _ in events.cold_starts] == ["fn"]
    await no_jobs_left(cluster)
    for phase in ("scheduled", "running", "ready", "first_result"):
        labels = {"phase": phase}
        assert registry.get_sample_value("nanofaas_kubernetes_job_phase_seconds_count", labels) == 1, phase


async def test_a_stdio_function_runs_under_the_watchdog_in_its_pod(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    spec = runtime_spec(handler_dir, runtime_mode=types_pb2.RUNTIME_MODE_STDIO, command=["cat"])
    outcome = await backend.dispatch(make_attempt(spec, orjson.dumps({"a": [1, 2]})))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert orjson.loads(outcome.output)["input"] == {"a": [1, 2]}  # cat echoes the request
    await no_jobs_left(cluster)


async def test_a_function_error_is_not_a_crash(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), orjson.dumps("fail")))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome
    assert "asked to fail" in outcome.message
    await no_jobs_left(cluster)


async def test_an_image_that_cannot_be_pulled_ends_the_attempt_at_once(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    spec = runtime_spec(handler_dir, image="registry.example/missing:1")
    outcome = await backend.dispatch(make_attempt(spec, timeout=60))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome  # not retried
    assert outcome.error_code == codes.START_FAILED
    assert "ErrImagePull" in outcome.message
    assert "registry.example/missing:1" in outcome.message
    await no_jobs_left(cluster)


async def test_a_container_killed_by_a_signal_is_a_crash(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("hog"), timeout=60)
    outcome = await backend.dispatch(attempt)
    assert outcome.kind is OutcomeKind.CRASH, outcome
    assert outcome.error_code == codes.CRASH
    assert "SIGKILL" in outcome.message
    await no_jobs_left(cluster)


async def running_pod(cluster: FakeCluster, execution_id: str) -> str:
    """The name of the attempt's pod once its container runs."""

    def find() -> str:
        for pod in cluster.objects("pods", "default"):
            labels = pod["metadata"].get("labels") or {}
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if (
                labels.get(naming.EXECUTION_LABEL) == execution_id
                and statuses
                and "running" in statuses[0]["state"]
            ):
                return str(pod["metadata"]["name"])
        return ""

    await wait_off_loop(cluster, lambda: bool(find()), "the attempt's pod running")
    return find()


async def test_an_oom_kill_mid_request_is_a_crash_naming_it(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=60)
    dispatch = asyncio.ensure_future(backend.dispatch(attempt))
    pod = await running_pod(cluster, attempt.execution_id)
    await asyncio.to_thread(cluster.oom_kill, "default", pod)
    outcome = await asyncio.wait_for(dispatch, 20)
    assert outcome.kind is OutcomeKind.CRASH, outcome
    assert "OOMKilled" in outcome.message
    await no_jobs_left(cluster)


async def test_a_pod_deleted_under_the_attempt_is_a_crash(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=60)
    dispatch = asyncio.ensure_future(backend.dispatch(attempt))
    pod = await running_pod(cluster, attempt.execution_id)
    await asyncio.to_thread(cluster.lose_node, cluster.node_of("default", pod) or "")
    outcome = await asyncio.wait_for(dispatch, 20)
    assert outcome.kind is OutcomeKind.CRASH, outcome


async def test_an_unschedulable_pod_ends_the_attempt_after_the_bound(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path, tmp_path: Path
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("spec:\n  nodeSelector:\n    pool: nowhere\n")
    backend = await make_backend(NANOFAAS_K8S_POD_TEMPLATE=str(template))
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), timeout=30))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome
    assert outcome.error_code == codes.START_FAILED
    assert "Unschedulable for 1s" in outcome.message
    await no_jobs_left(cluster)


async def test_a_timeout_deletes_the_job(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=4)
    outcome = await backend.dispatch(attempt)
    assert outcome.kind is OutcomeKind.TIMEOUT, outcome
    await no_jobs_left(cluster)


async def test_cancelling_an_attempt_deletes_its_job(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=60)
    dispatch = asyncio.ensure_future(backend.dispatch(attempt))
    await running_pod(cluster, attempt.execution_id)
    dispatch.cancel()
    await asyncio.gather(dispatch, return_exceptions=True)
    await no_jobs_left(cluster)


async def test_api_errors_and_throttling_are_retried_and_counted(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    registry = CollectorRegistry()
    backend = await make_backend(registry)
    cluster.fail("create", "jobs", status=500, times=2, group="batch")
    cluster.throttle("delete", "jobs", times=1, retry_after=1, group="batch")
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), orjson.dumps(1)))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    await no_jobs_left(cluster)
    creates = [
        r.code
        for r in cluster.audit.records(user="nanofaas-scheduler")
        if (r.verb, r.resource) == ("create", "jobs")
    ]
    assert creates == [500, 500, 201]
    errors = {"verb": "create", "resource": "jobs", "code": "500"}
    assert registry.get_sample_value("nanofaas_kubernetes_api_errors_total", errors) == 2
    calls = {"verb": "create", "resource": "jobs"}
    assert registry.get_sample_value("nanofaas_kubernetes_api_seconds_count", calls) == 3


async def test_attempts_survive_dropped_and_compacted_watches(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("slow"), timeout=60)
    dispatch = asyncio.ensure_future(backend.dispatch(attempt))
    await asyncio.to_thread(cluster.drop_watches, reset=True)
    await asyncio.to_thread(cluster.compact)
    await asyncio.to_thread(cluster.drop_watches)
    outcome = await asyncio.wait_for(dispatch, 30)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    await no_jobs_left(cluster)
    pod_lists = [
        r
        for r in cluster.audit.records(user="nanofaas-scheduler")
        if (r.verb, r.resource) == ("list", "pods")
    ]
    assert len(pod_lists) >= 2  # the 410 after the compaction made it list again


async def test_leftover_jobs_are_deleted_at_start(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    first = await make_backend()
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=60)
    dispatch = asyncio.ensure_future(first.dispatch(attempt))
    await running_pod(cluster, attempt.execution_id)
    assert ours(cluster, "jobs", "batch")
    await make_backend()  # a restarted scheduler knows no execution of the old one
    await no_jobs_left(cluster)
    dispatch.cancel()
    await asyncio.gather(dispatch, return_exceptions=True)


async def test_a_hung_api_ends_the_attempt_at_its_deadline_and_leaves_no_job(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    cluster.hang("create", "jobs", seconds=30, group="batch")
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), timeout=2))
    assert outcome.kind is OutcomeKind.TIMEOUT, outcome
    await asyncio.to_thread(cluster.release_hangs)  # the create now succeeds, after the attempt
    await no_jobs_left(cluster)
    records = cluster.audit.records(user="nanofaas-scheduler")
    assert [r.code for r in records if (r.verb, r.resource) == ("create", "jobs")] == [201]
    assert [r.code for r in records if (r.verb, r.resource) == ("delete", "jobs")] == [200]


async def test_secrets_from_the_template_reach_the_function_and_a_missing_one_fails_fast(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path, tmp_path: Path
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "spec:\n  containers:\n    - name: function\n"
        "      envFrom:\n        - secretRef: {name: fn-secrets}\n"
    )
    backend = await make_backend(NANOFAAS_K8S_POD_TEMPLATE=str(template))
    spec = runtime_spec(handler_dir, image="nanofaas/python-runtime:test")
    outcome = await backend.dispatch(make_attempt(spec, timeout=30))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome
    assert outcome.error_code == codes.START_FAILED
    assert "CreateContainerConfigError" in outcome.message and "fn-secrets" in outcome.message
    await no_jobs_left(cluster)

    client = kubernetes.client
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="fn-secrets"), string_data={"GREETING": "hello"}
    )
    new_client: Any = kubernetes.config.new_client_from_config  # untyped
    core = client.CoreV1Api(new_client(str(cluster.kubeconfig)))
    await asyncio.to_thread(core.create_namespaced_secret, "default", secret)
    outcome = await backend.dispatch(make_attempt(spec, orjson.dumps("env"), timeout=30))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert orjson.loads(outcome.output) == {"GREETING": "hello"}
    await no_jobs_left(cluster)


async def test_attempts_made_during_start_up_survive_its_clean_up(
    make_backend: BackendMaker, cluster: FakeCluster, handler_dir: Path
) -> None:
    backend = await make_backend(start=False)
    spec = runtime_spec(handler_dir)
    # The registry's announcement starts the backend; an invocation arrives meanwhile.
    _, outcome = await asyncio.gather(
        backend.function_changed(spec), backend.dispatch(make_attempt(spec, orjson.dumps(7), timeout=30))
    )
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    await no_jobs_left(cluster)
