"""(i) Autoscaling: scale-from-zero latency (local, and on the fake cluster) and a step load.

Scale from zero: a WARM function with minReplicas 0 is left idle until its
status shows zero replicas, then one sync invocation is timed — the wait for
the first replica plus the call. The same on the kubernetes backend against
the fake cluster (tests/fakekube, when installed), where the first replica is
a pod the fake kubelet starts.

Step load: closed-loop clients invoke a handler that holds its replica for a
moment, in steps of 1, 4, 8, 2 and 0 clients; the function's status is
sampled every 100 ms, so the report has desired/current/ready replicas over
time next to the demand (plotted: autoscaling_step_load.png).

The platform runs with short autoscaler windows (NANOFAAS_AUTOSCALE_*), and
the functions with a short scaleDownDelayMs, so the run takes seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.config import HANDLERS_DIR
from bench.platform import RUNTIME_IMAGE, register, start_platform
from bench.scenarios import Context, log
from bench.stats import percentile

FAST_AUTOSCALER = {
    "NANOFAAS_AUTOSCALE_TICK_MS": "50",
    "NANOFAAS_AUTOSCALE_STABLE_WINDOW_MS": "2000",
    "NANOFAAS_AUTOSCALE_PANIC_WINDOW_MS": "500",
}
STEPS = (1, 4, 8, 2, 0)  # closed-loop clients per step
HOLD_S = 0.05  # how long each invocation holds its replica in the step load
SAMPLE_S = 0.1


def _spec(name: str, handler: str, **fields: Any) -> dict[str, Any]:
    env = {"PYTHONPATH": str(HANDLERS_DIR), "HANDLER_MODULE": handler, "HANDLER_FUNCTION": "handle"}
    return {"name": name, "image": RUNTIME_IMAGE, "executionMode": "WARM", "env": env, **fields}


async def _status(session: aiohttp.ClientSession, base: str, name: str) -> dict[str, Any]:
    async with session.get(f"{base}/v1/functions/{name}/status") as response:
        body: dict[str, Any] = await response.json()
        return body


async def _wait_current(
    session: aiohttp.ClientSession, base: str, name: str, at_most: int, timeout_s: float
) -> None:
    """Until the function has at most `at_most` replicas (bounded); the status route is all a client has."""
    async with asyncio.timeout(timeout_s):
        while (await _status(session, base, name))["replicas"]["current"] > at_most:  # noqa: ASYNC110
            await asyncio.sleep(SAMPLE_S / 2)


async def _from_zero(base: str, name: str, samples: int) -> dict[str, Any]:
    """Wait (bounded) for zero replicas, then time one invocation; `samples` times."""
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            await _wait_current(session, base, name, 0, 120)
            started = time.perf_counter()
            async with session.post(f"{base}/v1/functions/{name}:invoke", json={"input": None}) as response:
                body = await response.json()
            latencies.append((time.perf_counter() - started) * 1000.0)
            failures += response.status != 200 or body.get("status") != "success"
    return {
        "samples": samples,
        "p50_ms": percentile(latencies, 50),
        "max_ms": max(latencies, default=float("nan")),
        "min_ms": min(latencies, default=float("nan")),
        "failures": failures,
    }


async def _step_load(base: str, name: str, step_s: float) -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    clients = 0
    done = asyncio.Event()
    step_changed = asyncio.Condition()
    invocations = failures = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(index: int) -> None:
            nonlocal invocations, failures
            while not done.is_set():
                if index >= clients:  # off in this step: wait for the next one
                    async with step_changed:
                        await step_changed.wait_for(lambda: index < clients or done.is_set())
                    continue
                url = f"{base}/v1/functions/{name}:invoke"
                async with session.post(url, json={"input": HOLD_S}) as response:
                    await response.read()
                invocations += 1
                failures += response.status != 200

        async def sampler() -> None:
            while not done.is_set():
                body = await _status(session, base, name)
                timeline.append(
                    {
                        "t_s": round(time.perf_counter() - started, 3),
                        "clients": clients,
                        **{key: body["replicas"][key] for key in ("desired", "current", "ready")},
                        "in_flight": body["inFlight"],
                        "queued": body["queued"],
                    }
                )
                await asyncio.sleep(SAMPLE_S)

        tasks = [asyncio.ensure_future(client(i)) for i in range(max(STEPS))]
        tasks.append(asyncio.ensure_future(sampler()))
        try:
            for step in STEPS:
                async with step_changed:
                    clients = step
                    step_changed.notify_all()
                await asyncio.sleep(step_s)  # the step's duration: time is what is measured here
            await _wait_current(session, base, name, 1, 60)  # back at its minimum
            await asyncio.sleep(SAMPLE_S * 2)
        finally:
            done.set()
            async with step_changed:
                step_changed.notify_all()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "steps": list(STEPS),
        "step_s": step_s,
        "invocations": invocations,
        "failures": failures,
        "peak_replicas": max((row["current"] for row in timeline), default=0),
        "timeline": timeline,
    }


def _local(ctx: Context, samples: int, step_s: float) -> dict[str, Any]:
    platform = start_platform(ctx.log_dir / "platform-i", **FAST_AUTOSCALER)
    try:
        register(platform.base_url, _spec("zero", "noop", minReplicas=0, scaleDownDelayMs=200))
        register(
            platform.base_url,
            _spec("steps", "sleepy", concurrency=8, minReplicas=1, scaleDownDelayMs=1000, queueSize=1000),
        )
        from_zero = asyncio.run(_from_zero(platform.base_url, "zero", samples))
        log(f"i/autoscaling local from zero: p50 {from_zero['p50_ms']:.1f} ms")
        steps = asyncio.run(_step_load(platform.base_url, "steps", step_s))
        log(f"i/autoscaling step load: peak {steps['peak_replicas']} replicas")
        return {"from_zero": from_zero, "step_load": steps}
    finally:
        platform.stop()


def _fake_cluster(ctx: Context, samples: int) -> dict[str, Any]:
    try:
        fakekube: Any = importlib.import_module("fakekube")
    except ImportError:
        return {"skipped": "fakekube (tests/fakekube) is not installed in this environment"}
    work = Path(tempfile.mkdtemp(prefix="bench-fakekube-"))
    with fakekube.FakeCluster(work_dir=work) as cluster:
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        cluster.add_image(RUNTIME_IMAGE, [sys.executable, "-m", "nanofaas_runtime"], env={"PATH": path})
        kubeconfig = cluster.write_kubeconfig(work / "kubeconfig", user="nanofaas-scheduler")
        platform = start_platform(
            ctx.log_dir / "platform-i-kubernetes",
            NANOFAAS_BACKEND="kubernetes",
            KUBECONFIG=str(kubeconfig),
            NANOFAAS_K8S_NAMESPACE="default",
            **FAST_AUTOSCALER,
        )
        try:
            register(platform.base_url, _spec("zero", "noop", minReplicas=0, scaleDownDelayMs=200))
            result = asyncio.run(_from_zero(platform.base_url, "zero", samples))
            log(f"i/autoscaling fake cluster from zero: p50 {result['p50_ms']:.1f} ms")
            return result
        finally:
            platform.stop()


def run_autoscaling(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    samples = max(3, cfg.repeats * 2)
    step_s = max(2.0, cfg.duration_s / 2)
    result = _local(ctx, samples, step_s)
    result["from_zero_kubernetes"] = _fake_cluster(ctx, samples)
    return result


def render(i: dict[str, Any]) -> list[str]:
    out = ["## i: autoscaling (scale from zero, step load)", ""]
    if "from_zero" not in i:
        return [*out, str(i.get("error") or "not run"), ""]
    out += ["| backend | samples | p50 ms | min ms | max ms | failures |", "|---|---:|---:|---:|---:|---:|"]
    for label, row in (("local", i["from_zero"]), ("kubernetes (fake cluster)", i["from_zero_kubernetes"])):
        if "skipped" in row:
            out.append(f"| {label} | skipped: {row['skipped']} | | | | |")
            continue
        out.append(
            f"| {label} | {row['samples']} | {row['p50_ms']:.1f} | {row['min_ms']:.1f} | "
            f"{row['max_ms']:.1f} | {row['failures']} |"
        )
    steps = i["step_load"]
    out += [
        "",
        "From zero = an invocation at zero replicas: waiting for the first replica, then the call.",
        "",
        f"Step load: {steps['steps']} closed-loop clients, {steps['step_s']:g} s each, "
        f"each invocation holding its replica {HOLD_S * 1000:.0f} ms; peak {steps['peak_replicas']} "
        f"replicas, {steps['invocations']} invocations, {steps['failures']} failures.",
        "",
        "![replicas over time](autoscaling_step_load.png)",
        "",
    ]
    return out


def plot(report: dict[str, Any], out_dir: Path, plt: Any) -> list[str]:
    """Replicas (desired, current, ready) and clients over the step load's time."""
    steps = report["scenarios"].get("i", {}).get("step_load")
    if not steps or not steps["timeline"]:
        return []
    rows = steps["timeline"]
    times = [row["t_s"] for row in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.step(times, [row["clients"] for row in rows], where="post", label="clients (demand)", color="grey")
    for key in ("desired", "current", "ready"):
        ax.plot(times, [row[key] for row in rows], label=f"replicas {key}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("count")
    ax.set_title("step load: replicas follow demand")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "autoscaling_step_load.png", dpi=100)
    plt.close(fig)
    return ["autoscaling_step_load.png"]
