"""wrk as the load generator: Lua scripts for POST bodies, round-robin paths and id collection,
and a `done()` hook that prints the summary and latency percentiles as one JSON line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import ProcessGroups, cpu_seconds_between, snapshot

CDF_POINTS = (*range(1, 100), 99.5, 99.9, 99.99)

_REPORT = """
local cdf = {@CDF@}
done = function(summary, latency, requests)
  local e = summary.errors
  local pts = {}
  for _, p in ipairs(cdf) do pts[#pts + 1] = string.format("[%g,%d]", p, latency:percentile(p)) end
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"mean_us":%.1f,"max_us":%d,"cdf":[%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(pts, ",")))
  if done_extra then done_extra() end
end
""".replace("@CDF@", ",".join(str(point) for point in CDF_POINTS))

_POST = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"input":null}'
wrk.headers["Content-Type"] = "application/json"
"""

_ROUND_ROBIN = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("start", counter * 7919) end
local i = nil
request = function()
  if i == nil then i = (start or 0) % #paths end
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
"""

_COLLECT = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
ids = {}
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
response = function(status, headers, body)
  if status >= 200 and status < 300 then
    ids[#ids + 1] = body
    if limit > 0 and #ids >= limit then wrk.thread:stop() end
  end
end
done_extra = function()
  local out = assert(io.open(os.getenv("BENCH_IDS"), "w"))
  for _, t in ipairs(threads) do
    for _, body in ipairs(t:get("ids")) do out:write(body, "\\n") end
  end
  out:close()
end
"""

SCRIPTS = {"post": _POST, "round_robin": _POST + _ROUND_ROBIN, "collect": _POST + _COLLECT}


@dataclass
class WrkRun:
    """One wrk run: what completed, how fast, the latency distribution and CPU per request."""

    connections: int
    requests: int
    duration_s: float
    rps: float
    non2xx: int
    socket_errors: int
    mean_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cdf_ms: list[tuple[float, float]]
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: run `apt-get install -y wrk` (make bench does this)")
    return path


def _parse(output: str, connections: int) -> WrkRun:
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    cdf = [(float(p), us / 1000.0) for p, us in raw["cdf"]]
    by_point = dict(cdf)
    duration_s = raw["duration_us"] / 1e6
    return WrkRun(
        connections=connections,
        requests=raw["requests"],
        duration_s=duration_s,
        rps=raw["requests"] / duration_s if duration_s else 0.0,
        non2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        mean_ms=raw["mean_us"] / 1000.0,
        max_ms=raw["max_us"] / 1000.0,
        p50_ms=by_point[50.0],
        p90_ms=by_point[90.0],
        p99_ms=by_point[99.0],
        cdf_ms=cdf,
    )


def run_wrk(
    url: str,
    connections: int,
    duration_s: float,
    *,
    script: str = "post",
    env: dict[str, str] | None = None,
    cpu_of: Callable[[], ProcessGroups] | None = None,
) -> WrkRun:
    """Run wrk once (2 threads at most: this machine has 2 cores) and attribute CPU to `cpu_of()`."""
    wrk = require_wrk()
    threads = max(1, min(2, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(SCRIPTS[script] + _REPORT)
    argv: Sequence[str] = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        lua.name,
        url,
    ]
    try:
        before = snapshot(cpu_of()) if cpu_of else {}
        started = time.time()
        done = subprocess.run(
            argv,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
        ended = time.time()
        after = snapshot(cpu_of()) if cpu_of else {}
    finally:
        Path(lua.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    result = _parse(done.stdout, connections)
    result.started_at, result.ended_at = started, ended
    if cpu_of and result.requests:
        spent = cpu_seconds_between(before, after)
        result.cpu_us_per_request = {name: s * 1e6 / result.requests for name, s in spent.items()}
    return result
