"""The behaviour every nanofaas process shares, checked on the real processes side by side.

The gateway, registry, scheduler and runtime each keep their own copy of their logging and
settings code (services share contracts, not code). This module is what keeps the copies
alike: the same JSON line shape with a correct UTC millisecond `ts`, the same LOG_LEVEL
fallback, the same exit on a bad setting, and the current span's ids on lines logged inside
one.

One scenario runs for the module: the platform plus a lone runtime plus a second gateway, all
with LOG_LEVEL=verbose, tracing on (to the test's OTLP receiver) and the log probe on
PYTHONPATH (log_probe/sitecustomize.py: every record then carries the millisecond its `ts`
must show). Each test then judges one property on the logs it left.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from .conftest import start_platform, stop_platform
from .helpers import FUNCTIONS_DIR, free_port, invoke, json_lines, python_spec, wait_for_log_entry
from .otlp_receiver import start_receiver

PROBE_DIR = Path(__file__).resolve().parent / "log_probe"
# Each process of the scenario: its log's name -> the `service` its own lines carry.
SERVICES = {
    "gateway": "gateway",
    "registry": "registry",
    "scheduler": "scheduler",
    "runtime": "runtime",
    "gateway-in-span": "gateway",
}
CORE_KEYS = ("ts", "level", "service", "msg", "logger")
TS_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{3})Z")
SPAN_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
STOP_TIMEOUT_S = 30.0


def traceparent() -> tuple[str, str]:
    """A fresh W3C traceparent and its trace id."""
    trace_id = uuid.uuid4().hex
    return f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01", trace_id


@dataclass
class Scenario:
    """What the processes logged, and the trace each in-span line must belong to."""

    started_at: float
    read_at: float = 0.0
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    in_span: dict[str, tuple[str, str]] = field(default_factory=dict)  # log -> (msg, trace id)

    def own(self, name: str) -> list[dict[str, Any]]:
        """The lines a process logged itself (the scheduler's log also relays function processes)."""
        return [entry for entry in self.logs[name] if entry.get("service") == SERVICES[name]]


def message_starting(prefix: str) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: str(entry.get("msg", "")).startswith(prefix)


def _start(module: str, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


async def _data_loss_backend() -> tuple[grpc.aio.Server, str]:
    """A registry whose Get fails with a status the gateway has no REST answer for (it logs it)."""

    async def get(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.DATA_LOSS, "conformance: an unmapped status")
        raise AssertionError("unreachable")

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "nanofaas.v1.Registry", {"Get": grpc.unary_unary_rpc_method_handler(get)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _drive(scenario: Scenario, platform_url: str, runtime_url: str, gateway_url: str) -> None:
    """Make every process log at least one line inside a span, each of its own trace."""
    async with aiohttp.ClientSession(base_url=platform_url) as http:
        # The registry logs the registration inside its RPC's server span.
        header, trace_id = traceparent()
        name = f"conformance-{uuid.uuid4().hex[:6]}"
        async with http.post(
            "/v1/functions", json=python_spec(name, "fail"), headers={"traceparent": header}
        ) as response:
            assert response.status == 201, await response.text()
        scenario.in_span["registry"] = ("function registered", trace_id)
        # The scheduler logs a failed execution inside the span of the RPC that admitted it.
        header, trace_id = traceparent()
        status, _, _ = await invoke(http, name, "x", headers={"traceparent": header})
        assert status == 502
        scenario.in_span["scheduler"] = ("execution ended", trace_id)
    async with aiohttp.ClientSession() as http:
        header, trace_id = traceparent()
        async with http.post(
            f"{runtime_url}/invoke", json={"input": "hello"}, headers={"traceparent": header}
        ) as response:
            assert response.status == 200, await response.text()
        scenario.in_span["runtime"] = ("handler logged hello", trace_id)
        header, trace_id = traceparent()
        async with http.get(f"{gateway_url}/v1/functions/any", headers={"traceparent": header}) as response:
            assert response.status == 500, await response.text()
        scenario.in_span["gateway-in-span"] = ("unexpected gRPC error", trace_id)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scenario(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    log_dir = tmp_path_factory.mktemp("conformance")
    logs = {name: log_dir / f"{name}.log" for name in SERVICES}  # where start_platform writes too
    receiver_server, _, receiver_port = await start_receiver()
    backend, backend_address = await _data_loss_backend()
    try:
        scenario = Scenario(started_at=time.time())
        codes = await _run(scenario, logs, receiver_port, backend_address)
    finally:
        await backend.stop(None)
        await receiver_server.stop(None)
    scenario.read_at = time.time()
    for name, path in logs.items():
        scenario.raw[name] = path.read_text(errors="replace")
        scenario.logs[name] = json_lines(scenario.raw[name])
    assert codes == dict.fromkeys(SERVICES, 0), codes
    yield scenario


async def _run(scenario: Scenario, logs: dict[str, Path], receiver_port: int, backend: str) -> dict[str, int]:
    """Start every process, drive it, stop it; returns the exit statuses."""
    pythonpath = os.pathsep.join(filter(None, [str(PROBE_DIR), os.environ.get("PYTHONPATH", "")]))
    platform = await asyncio.to_thread(
        start_platform,
        logs["gateway"].parent,
        LOG_LEVEL="verbose",
        PYTHONPATH=pythonpath,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    runtime_port, gateway_port = free_port(), free_port()
    runtime_env = {
        **platform.env,
        "PORT": str(runtime_port),
        "HOST": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([str(PROBE_DIR), str(FUNCTIONS_DIR)]),
        "HANDLER_MODULE": "handlers",
        "HANDLER_FUNCTION": "log_line",
        "FUNCTION_NAME": "conformance",
    }
    gateway_env = {
        **platform.env,
        "NANOFAAS_GATEWAY_PORT": str(gateway_port),
        "NANOFAAS_GATEWAY_METRICS_PORT": "0",
        "NANOFAAS_REGISTRY_ADDRESS": backend,
        "NANOFAAS_SCHEDULER_ADDRESS": backend,
    }
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        started["runtime"] = _start("nanofaas_runtime", logs["runtime"], runtime_env)
        started["gateway-in-span"] = _start("nanofaas_gateway", logs["gateway-in-span"], gateway_env)
        # Processes we do not control: a log line is the only sign that they listen.
        for name, message in (("runtime", "runtime serving"), ("gateway-in-span", "gateway listening")):
            await wait_for_log_entry(logs[name].read_text, message_starting(message))
        await _drive(
            scenario,
            platform.base_url,
            f"http://127.0.0.1:{runtime_port}",
            f"http://127.0.0.1:{gateway_port}",
        )
        for name, (message, _) in scenario.in_span.items():
            await wait_for_log_entry(logs[name].read_text, message_starting(message))
    finally:
        codes = await asyncio.to_thread(stop_platform, platform)
        for name, process in started.items():
            codes[name] = await asyncio.to_thread(_stop, process)
    return codes


def test_every_line_is_json_with_the_same_core_keys(scenario: Scenario) -> None:
    for name in SERVICES:
        lines = [line for line in scenario.raw[name].splitlines() if line.strip()]
        assert len(lines) == len(scenario.logs[name]), f"{name} wrote a line that is not JSON"
        assert scenario.own(name), f"{name} logged nothing of its own"
        # Lines of our programs, the runtimes of functions that the scheduler relays included.
        for entry in (e for e in scenario.logs[name] if e.get("service") in set(SERVICES.values())):
            assert set(CORE_KEYS) <= set(entry), (name, entry)
            assert list(entry)[: len(CORE_KEYS)] == list(CORE_KEYS), (name, entry)
            assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), (name, entry)


def test_ts_is_utc_with_the_millisecond_of_the_moment_logged(scenario: Scenario) -> None:
    for name in SERVICES:
        for entry in scenario.logs[name]:
            match = TS_PATTERN.fullmatch(entry["ts"])
            assert match, (name, entry)
            moment = datetime.fromisoformat(entry["ts"]).timestamp()
            # Not before the scenario began (a local-time ts would be hours off), not after it was read.
            assert scenario.started_at - 1 <= moment <= scenario.read_at, (name, entry)
        probed = [entry for entry in scenario.own(name) if "probeMs" in entry]
        assert probed, f"{name}: the log probe was not loaded"
        for entry in probed:
            match = TS_PATTERN.fullmatch(entry["ts"])
            assert match and match[1] == entry["probeMs"], (name, entry)


def test_unknown_log_level_falls_back_to_info_with_one_warning(scenario: Scenario) -> None:
    shapes = set()
    for name in SERVICES:
        own = scenario.own(name)
        warnings = [entry for entry in own if entry.get("logLevel") == "verbose"]
        assert len(warnings) == 1, (name, warnings)
        (warning,) = warnings
        assert warning["level"] == "WARNING"
        assert "'verbose'" in warning["msg"] and "using INFO" in warning["msg"], warning
        shapes.add(tuple(warning))
        levels = {entry["level"] for entry in own}
        assert "INFO" in levels and "DEBUG" not in levels, (name, levels)
    assert len(shapes) == 1, shapes  # the same keys, in the same order, everywhere


def test_lines_logged_inside_a_span_carry_its_trace_and_span_ids(scenario: Scenario) -> None:
    assert set(scenario.in_span) == {"registry", "scheduler", "runtime", "gateway-in-span"}
    for name, (message, trace_id) in scenario.in_span.items():
        inside = [entry for entry in scenario.own(name) if entry["msg"] == message]
        assert inside, (name, message)
        for entry in inside:
            assert entry["traceId"] == trace_id, (name, entry)
            assert SPAN_ID_PATTERN.fullmatch(entry.get("spanId", "")), (name, entry)
    for name in SERVICES:
        listening = [entry for entry in scenario.own(name) if "listening" in entry["msg"]]
        for entry in listening:  # start-up happens outside any span
            assert "traceId" not in entry and "spanId" not in entry, (name, entry)


@pytest.mark.parametrize(
    ("program", "variable"),
    [
        ("gateway", "NANOFAAS_GATEWAY_PORT"),
        ("registry", "NANOFAAS_REGISTRY_PORT"),
        ("scheduler", "NANOFAAS_SCHEDULER_PORT"),
        ("runtime", "PORT"),
    ],
)
def test_a_bad_port_exits_2_with_one_line(program: str, variable: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_LEVEL"))}
    env.update(
        {
            variable: "abc",
            "PYTHONPATH": str(FUNCTIONS_DIR),
            "HANDLER_MODULE": "handlers",
            "HANDLER_FUNCTION": "echo",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", f"nanofaas_{program}"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"nanofaas-{program}: {variable}: must be an integer between 0 and 65535 (got 'abc')"
    ]


def _tracing_rules() -> dict[str, Callable[[dict[str, str]], bool]]:
    """Each program's own on/off rule for tracing (a function of the environment)."""
    from nanofaas_gateway.tracing import tracing_requested
    from nanofaas_registry.tracing import tracing_enabled as registry_rule
    from nanofaas_runtime.tracing import tracing_enabled as runtime_rule
    from nanofaas_scheduler.observability.tracing import tracing_configured

    return {
        "gateway": tracing_requested,
        "registry": registry_rule,
        "scheduler": tracing_configured,
        "runtime": runtime_rule,
    }


ENDPOINT = "http://127.0.0.1:4317"
TRACING_CASES = [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "false"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": " None "}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
]


@pytest.mark.parametrize("program", ["gateway", "registry", "scheduler", "runtime"])
@pytest.mark.parametrize(("env", "on"), TRACING_CASES)
def test_tracing_is_on_by_the_same_rule_everywhere(program: str, env: dict[str, str], on: bool) -> None:
    assert _tracing_rules()[program](env) is on
