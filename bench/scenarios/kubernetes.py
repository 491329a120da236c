"""(j) The Kubernetes backend's dispatch cost: the warm no-op of (a) on the fake cluster, paired
with the local backend in the same scenario.

Two platforms run side by side: one on the kubernetes backend against the fake cluster
(tests/fakekube in a process of its own, pods as local processes: bench/fake_cluster.py), one
fresh on the local backend. Both get (a)'s function and warm-up; then, at each connection
count (the configured ones limited to 1 and 32), each repeat measures both, alternating which
goes first, so whatever the machine's other load does hits both alike. Before every measured
run the function gets (a)'s warm-up burst again and the bench waits (bounded) for its pool to be
steady (ready = current = desired replicas), so neither backend is measured while it scales:
the idle one would otherwise have shrunk its pool while the other was measured.

CPU per invocation is per process group: gateway, scheduler, registry, the function processes
(local: the scheduler's descendants; kubernetes: the pods, the fake cluster's descendants) and,
for the kubernetes side, the fake cluster itself (API server, controllers, kubelet: not the
platform's cost, shown apart). The platform's figure is gateway + scheduler + registry +
function processes; `cpu_ratio_k8s_local` is the ratio of its run medians, per connection count.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import ROOT
from bench.loadgen import WrkRun, run_wrk
from bench.platform import RUNTIME_IMAGE, Platform, noop_spec, register, request_json, start_platform, warm_up
from bench.procs import Child, cpu_seconds_between, descendants, snapshot, spawn, start_time
from bench.scenarios import Context, log
from bench.scenarios.profiling import profiling
from bench.scenarios.sync_load import measure, summarise
from bench.stats import fmt_spread, spread

FUNCTION = "noop-warm"
SCHEDULER_USER = "nanofaas-scheduler"
PLATFORM_GROUPS = ("gateway", "scheduler", "registry", "functions")
BACKENDS = ("local", "kubernetes")
READY_TIMEOUT_S = 60.0
STEADY_TIMEOUT_S = 120.0


@dataclass
class Target:
    """One platform under test and, on the kubernetes backend, the fake cluster it runs on."""

    backend: str
    platform: Platform
    cluster: Child | None = None

    @property
    def url(self) -> str:
        return f"{self.platform.base_url}/v1/functions/{FUNCTION}:invoke"

    def pids(self) -> dict[str, list[int]]:
        groups = {name: [child.pid] for name, child in self.platform.children.items()}
        if self.cluster is None:
            groups["functions"] = descendants(self.platform.children["scheduler"].pid)
        else:
            groups["functions"] = descendants(self.cluster.pid)
            groups["fakekube"] = [self.cluster.pid]
        return groups

    def replicas(self) -> dict[str, int]:
        status, body = request_json("GET", f"{self.platform.base_url}/v1/functions/{FUNCTION}/status")
        if status != 200:
            raise RuntimeError(f"{self.backend}: status of {FUNCTION} answered {status} {body}")
        return {key: int(body["replicas"][key]) for key in ("desired", "current", "ready")}


def _wait_steady(target: Target, timeout_s: float = STEADY_TIMEOUT_S) -> dict[str, int]:
    """Until the pool is steady (ready = current = desired); polled: the status route is all we have."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = target.replicas()
        if counts["ready"] == counts["current"] == counts["desired"] > 0:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.backend}: pool not steady within {timeout_s:.0f} s: {counts}")
        time.sleep(0.1)


def _warm(ctx: Context, target: Target) -> dict[str, int]:
    """(a)'s warm-up burst, then a steady pool."""
    concurrency = ctx.config.warm_concurrency
    warm_up(target.url, 50 * concurrency, parallel=2 * concurrency)
    return _wait_steady(target)


@contextmanager
def fake_cluster(log_dir: Path) -> Iterator[tuple[Child, Path]]:
    """The fake cluster process and its kubeconfig; stopped, its pods gone and its files removed after."""
    work = Path(tempfile.mkdtemp(prefix="bench-j-fakekube-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    argv = [sys.executable, "-m", "bench.fake_cluster", str(work), RUNTIME_IMAGE, SCHEDULER_USER]
    child: Child | None = None
    try:
        child = spawn("fakekube", argv, env, log_dir)
        kubeconfig = work / "kubeconfig"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not kubeconfig.exists():  # the launcher renames it into place once it serves
            if not child.alive():
                tail = child.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the fake cluster exited with {child.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake cluster did not serve within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        yield child, kubeconfig
    finally:
        if child is not None:
            _stop_cluster(child)
        shutil.rmtree(work, ignore_errors=True)


def _stop_cluster(child: Child) -> None:
    """SIGTERM (the cluster kills its pods' process groups); pods left if it had to be killed die too.

    Each pod leads a session of its own, so killing the cluster's group misses them; a pod is
    killed only if its pid still names the same process (same start time), never a newcomer.
    """
    pods = {pid: start_time(pid) for pid in descendants(child.pid)}
    child.stop(grace_s=30)
    for pid, started in pods.items():
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _idle(targets: dict[str, Target], seconds: float) -> dict[str, dict[str, float]]:
    """CPU ms per second of each group with no load, both platforms over the same window.

    What a backend costs per second whatever the traffic (the kubernetes client's watches,
    the probes), which per invocation weighs most at 1 connection. Time is what is measured.
    """
    before = {backend: snapshot(target.pids()) for backend, target in targets.items()}
    time.sleep(seconds)
    return {
        backend: {
            name: spent * 1000 / seconds
            for name, spent in cpu_seconds_between(before[backend], snapshot(target.pids())).items()
        }
        for backend, target in targets.items()
    }


def _platform_cpu(run: WrkRun) -> float:
    return sum(run.cpu_us_per_request.get(name, 0.0) for name in PLATFORM_GROUPS)


def _cell(runs: list[WrkRun], replicas: list[dict[str, int]]) -> dict[str, Any]:
    row = summarise(runs)
    row["cpu_us_per_request"]["platform"] = spread(_platform_cpu(run) for run in runs)
    row["replicas_before_runs"] = replicas
    return row


def _measure_all(ctx: Context, targets: dict[str, Target]) -> dict[str, Any]:
    cfg = ctx.config
    connections = tuple(c for c in cfg.connections if c in (1, 32)) or cfg.connections[:1]
    rows: dict[str, list[dict[str, Any]]] = {backend: [] for backend in targets}
    pairs: dict[str, list[float]] = {}
    for conns in connections:
        runs: dict[str, list[WrkRun]] = {backend: [] for backend in targets}
        replicas: dict[str, list[dict[str, int]]] = {backend: [] for backend in targets}
        for repeat in range(cfg.repeats):
            order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
            for backend in order:
                target = targets[backend]
                replicas[backend].append(_warm(ctx, target))
                label = f"j/{backend} c={conns} #{repeat + 1}"
                runs[backend].append(measure(ctx, label, target.url, conns, cpu_of=target.pids))
        for backend in targets:
            rows[backend].append(_cell(runs[backend], replicas[backend]))
        pairs[str(conns)] = [
            _platform_cpu(k8s) / _platform_cpu(local)
            for local, k8s in zip(runs["local"], runs["kubernetes"], strict=True)
        ]
    ratio = {}
    for local_row, k8s_row in zip(rows["local"], rows["kubernetes"], strict=True):
        base = local_row["cpu_us_per_request"]["platform"]["median"]
        ratio[str(local_row["connections"])] = k8s_row["cpu_us_per_request"]["platform"]["median"] / base
    return {**rows, "cpu_ratio_k8s_local": ratio, "cpu_ratio_per_repeat": pairs}


def run_kubernetes(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    spec = noop_spec(FUNCTION, concurrency=cfg.warm_concurrency, queueSize=10_000)
    targets: dict[str, Target] = {}
    with fake_cluster(ctx.log_dir) as (cluster, kubeconfig):
        try:
            targets["kubernetes"] = Target(
                "kubernetes",
                start_platform(
                    ctx.log_dir / "platform-j-kubernetes",
                    NANOFAAS_BACKEND="kubernetes",
                    KUBECONFIG=str(kubeconfig),
                    NANOFAAS_K8S_NAMESPACE="default",
                ),
                cluster,
            )
            targets["local"] = Target("local", start_platform(ctx.log_dir / "platform-j-local"))
            for target in targets.values():
                register(target.platform.base_url, spec)
                counts = _warm(ctx, target)
                log(f"j/{target.backend}: warm, replicas {counts}")
            idle = _idle(targets, max(5.0, cfg.duration_s))
            log(f"j: idle CPU ms/s {_rounded(idle)}")
            result = _measure_all(ctx, targets)
            if cfg.profile:
                for target in targets.values():
                    _profile(ctx, target)
            stray = descendants(targets["kubernetes"].platform.children["scheduler"].pid)
        finally:
            for target in targets.values():
                target.platform.stop()
    ratio = ", ".join(f"{c} conns {r:.2f}" for c, r in result["cpu_ratio_k8s_local"].items())
    log(f"j: platform CPU per invocation, kubernetes / local: {ratio}")
    return {
        "function": spec,
        "cluster": "tests/fakekube in its own process, pods as local processes (bench/fake_cluster.py)",
        "scheduler_children_on_kubernetes": len(stray),
        "idle_cpu_ms_per_s": idle,
        **result,
    }


def _profile(ctx: Context, target: Target) -> None:
    """py-spy the gateway, the scheduler and one function process (a pod on the kubernetes
    backend) of one backend during one extra 32-connection run: `profile-j-<backend>-*.txt`."""
    _warm(ctx, target)
    pids = target.pids()
    targets = {name: pids[name][0] for name in ("gateway", "scheduler")}
    if pids["functions"]:
        targets["runtime"] = min(pids["functions"])
    duration = max(5, ctx.config.duration_s)
    with profiling(ctx, f"j-{target.backend}", targets, duration):
        run_wrk(target.url, 32, duration)


def _rounded(idle: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {backend: {name: round(ms, 1) for name, ms in groups.items()} for backend, groups in idle.items()}


def render(j: dict[str, Any]) -> list[str]:
    out = ["## j: the Kubernetes backend (fake cluster) vs the local backend", ""]
    if "cpu_ratio_k8s_local" not in j:
        return [*out, str(j.get("error") or "not run"), ""]
    pairs = j.get("cpu_ratio_per_repeat") or {}
    ratio = ", ".join(
        f"{c} conns **{r:.2f}** (per repeat: {', '.join(f'{p:.2f}' for p in pairs.get(c, ()))})"
        for c, r in j["cpu_ratio_k8s_local"].items()
    )
    out += [
        f"Warm no-op as in (a); the two backends alternate per repeat. Platform CPU per invocation "
        f"(gateway + scheduler + registry + function processes), kubernetes / local, ratio of the "
        f"medians: {ratio}.",
        "",
        "| backend | conns | req/s | p50 ms | p99 ms | gateway | scheduler | registry | functions "
        "| platform | fake cluster | replicas before runs | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for backend in BACKENDS:
        for row in j[backend]:
            cpu = row["cpu_us_per_request"]
            cells = [
                fmt_spread(row["rps"], 0),
                fmt_spread(row["p50_ms"]),
                fmt_spread(row["p99_ms"]),
                *(fmt_spread(cpu.get(name), 0) for name in (*PLATFORM_GROUPS, "platform", "fakekube")),
                f"ready {sorted({r['ready'] for r in row['replicas_before_runs']})}",
                str(row["non2xx"]),
            ]
            out.append(f"| {backend} | {row['connections']} | " + " | ".join(cells) + " |")
    out += ["", "CPU columns: µs per invocation, median (min-max) over the repeats.", ""]
    if idle := j.get("idle_cpu_ms_per_s"):
        names = [*PLATFORM_GROUPS, "fakekube"]
        out += [
            "Idle, both warm pools at rest over the same window (CPU ms per second):",
            "",
            "| backend | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for backend in BACKENDS:
            cells = [f"{idle[backend][n]:.1f}" if n in idle[backend] else "n/a" for n in names]
            out.append(f"| {backend} | " + " | ".join(cells) + " |")
        out += [""]
    return out
