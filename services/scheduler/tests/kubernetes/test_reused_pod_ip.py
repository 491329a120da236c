"""A request meant for one pod must never run on whatever else answers at its address.

Pod IPs are reused once a pod is gone, and the scheduler's view (pod watch, EndpointSlices)
lags: a POST can reach another function's pod on the same ip:port. Deterministically here:
the attempt's own container never serves, and another process — our runtime with an echo
handler, as another function's pod would be — listens on the pod's address, so the kubelet's
probe finds it ready and the scheduler POSTs to it. The scheduler names the pod it means
(`X-Pod-Uid`); the process that is not that pod refuses, and the attempt is a CRASH (retried)
rather than another function's output passed off as this one's.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from fakekube import FakeCluster
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.function_protocol import MISDIRECTED
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend
from nanofaas_scheduler.dispatch.kubernetes.warm import Endpoint, Pool

from ..conftest import make_attempt
from .conftest import BIN, no_jobs_left, runtime_spec, wait_off_loop

SILENT_IMAGE = "nanofaas/silent:test"  # a container that runs and never serves
FOREIGN = """
def handle(request, context=None):
    with open(__file__ + ".ran", "a") as ran:
        ran.write("ran\\n")
    return request["input"]
"""

StartForeign = Callable[[str], Awaitable[Path]]


@pytest.fixture
async def foreign(tmp_path: Path) -> AsyncIterator[StartForeign]:
    """Start another function's runtime (an echo) on an address; yields the starter."""
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "foreign.py").write_text(FOREIGN)
    processes: list[asyncio.subprocess.Process] = []

    async def start(ip: str) -> Path:
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(tmp_path / "foreign"),
            "HANDLER_MODULE": "foreign",
            "HOST": ip,
            "PORT": "8080",
            "NANOFAAS_POD_UID": "uid-of-another-functions-pod",
        }
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "nanofaas_runtime", env=env)
        processes.append(process)
        return tmp_path / "foreign" / "foreign.py.ran"

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


def _pod_ip(cluster: FakeCluster) -> str:
    pods = cluster.objects("pods", "default")
    return str((pods[0].get("status") or {}).get("podIP") or "") if pods else ""


async def test_a_process_that_is_not_the_attempts_pod_refuses_its_request(
    backend: KubernetesBackend,
    cluster: FakeCluster,
    handler_dir: Path,
    foreign: StartForeign,
) -> None:
    cluster.add_image(SILENT_IMAGE, [sys.executable, "-c", "import signal; signal.pause()"])
    spec = runtime_spec(handler_dir, image=SILENT_IMAGE)
    attempt = asyncio.ensure_future(backend.dispatch(make_attempt(spec, orjson.dumps("hi"), timeout=60)))
    await wait_off_loop(cluster, lambda: bool(_pod_ip(cluster)), "the attempt's pod has an IP")
    ran = await foreign(_pod_ip(cluster))
    outcome = await asyncio.wait_for(attempt, 60)
    # Without the check this was a SUCCESS with the other function's output: "hi".
    assert outcome.kind is OutcomeKind.CRASH, outcome  # retried by the scheduler
    assert outcome.error_code == codes.CRASH
    assert outcome.message.startswith(MISDIRECTED), outcome
    assert "uid-of-another-functions-pod" in outcome.message
    assert not ran.exists()  # the other function's handler never ran
    await no_jobs_left(cluster)


def test_a_warm_endpoint_that_answered_as_another_pod_is_skipped_until_the_slices_change() -> None:
    pool = Pool("fn", per_pod=2, slices={"s1": {"10.0.0.1": "uid-a", "10.0.0.2": "uid-b"}})
    pool.refresh()
    pool.quarantined[("10.0.0.1", "uid-a")] = math.inf  # the process at 10.0.0.1 is not pod uid-a
    picked = [pool.pick(now=0.0), pool.pick(now=0.0)]
    assert all(isinstance(e, Endpoint) and e.ip == "10.0.0.2" for e in picked)
    pool.slices["s1"] = {"10.0.0.1": "uid-c", "10.0.0.2": "uid-b"}  # the address is a new pod's now
    pool.refresh()
    assert pool.quarantined == {}
    assert pool.endpoints["10.0.0.1"].uid == "uid-c"
    assert pool.pick(now=0.0) is not None


def test_a_warm_endpoint_whose_connection_failed_is_skipped_for_a_while() -> None:
    pool = Pool("fn", per_pod=1, slices={"s1": {"10.0.0.1": "uid-a"}})
    pool.refresh()
    pool.quarantined[("10.0.0.1", "uid-a")] = 5.0
    assert pool.pick(now=4.9) is None  # a request waits (for a new pod, or the quarantine's end)
    assert pool.pick(now=5.0) is not None
