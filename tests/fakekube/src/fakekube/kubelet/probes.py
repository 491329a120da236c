"""Probes: httpGet, tcpSocket, exec and gRPC health, with the kubelet's timing and thresholds.

A probe runs every ``periodSeconds`` after ``initialDelaySeconds``, times out after
``timeoutSeconds``, and flips its result only after ``successThreshold`` successes or
``failureThreshold`` failures in a row. HTTP success is a status in 200..399, as in the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, str) and not value.isdigit():
        for port in container.get("ports") or ():
            if port.get("name") == value:
                return int(port["containerPort"])
        raise ValueError(f"port {value!r} is not a named port of the container")
    return int(value)


async def run_probe(
    probe: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, env: Mapping[str, str]
) -> tuple[bool, str]:
    """One attempt: ``(success, message)``."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        async with asyncio.timeout(timeout):
            if "httpGet" in probe:
                return await _http(probe["httpGet"], container, pod_ip)
            if "tcpSocket" in probe:
                port = _port(probe["tcpSocket"]["port"], container)
                _, writer = await asyncio.open_connection(probe["tcpSocket"].get("host") or pod_ip, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return True, ""
            if "exec" in probe:
                return await _exec(list(probe["exec"].get("command") or ()), env)
            if "grpc" in probe:
                return await _grpc(probe["grpc"], pod_ip)
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError, aiohttp.ClientError) as error:
        return False, str(error) or type(error).__name__
    return False, "probe has no handler"


async def _http(spec: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str) -> tuple[bool, str]:
    scheme = str(spec.get("scheme", "HTTP")).lower()
    host = spec.get("host") or pod_ip
    url = f"{scheme}://{host}:{_port(spec['port'], container)}{spec.get('path', '/')}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or ()}
    headers.setdefault("User-Agent", "kube-probe/1.32")
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
    ):
        ok = 200 <= response.status < 400
        return ok, "" if ok else f"HTTP probe failed with statuscode: {response.status}"


async def _exec(command: list[str], env: Mapping[str, str]) -> tuple[bool, str]:
    if not command:
        return False, "exec probe has no command"
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()
    return process.returncode == 0, output.decode(errors="replace")[-1024:]


async def _grpc(spec: Mapping[str, Any], pod_ip: str) -> tuple[bool, str]:
    try:
        grpc: Any = importlib.import_module("grpc.aio")
        health: Any = importlib.import_module("grpc_health.v1.health_pb2")
        stubs: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")
    except ImportError:
        return False, "gRPC probes need grpcio and grpcio-health-checking installed"
    async with grpc.insecure_channel(f"{pod_ip}:{int(spec['port'])}") as channel:
        reply = await stubs.HealthStub(channel).Check(
            health.HealthCheckRequest(service=spec.get("service", ""))
        )
        ok = reply.status == health.HealthCheckResponse.SERVING
        return ok, "" if ok else f"service unhealthy (responded with {reply.status})"


class Prober:
    """Runs one probe for one container; calls ``on_change(result)`` when the result flips."""

    def __init__(
        self,
        probe: Mapping[str, Any],
        container: Mapping[str, Any],
        pod_ip: str,
        env: Mapping[str, str],
        on_change: Callable[[bool, str], Awaitable[None]],
        *,
        initial: bool,
    ) -> None:
        self.probe, self.container, self.pod_ip, self.env = probe, container, pod_ip, env
        self.on_change = on_change
        self.result = initial
        self.last_message = ""

    async def run(self) -> None:
        period = float(self.probe.get("periodSeconds", 10))
        success_needed = int(self.probe.get("successThreshold", 1))
        failure_needed = int(self.probe.get("failureThreshold", 3))
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            ok, message = await run_probe(self.probe, self.container, self.pod_ip, self.env)
            self.last_message = message
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and not self.result and successes >= success_needed:
                self.result = True
                await self.on_change(True, message)
            elif not ok and failures >= failure_needed and (self.result or failures == failure_needed):
                # A flip to failure (liveness/readiness), or a startup probe running out of attempts.
                self.result = False
                await self.on_change(False, message)
            await asyncio.sleep(period)
