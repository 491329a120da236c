"""Probes: httpGet, tcpSocket, exec and gRPC health, with the kubelet's timing and thresholds.

A probe runs every ``periodSeconds`` after ``initialDelaySeconds``, times out after
``timeoutSeconds``, and flips its result only after ``successThreshold`` successes or
``failureThreshold`` failures in a row. HTTP success is a status in 200..399, as in the kubelet.
In pod-network mode the kubelet passes ``dial`` (a connection made from the cluster network):
HTTP probes then speak HTTP/1.1 over it, gRPC ones go through a relay to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from .network import Dial, Relays, loopback_listener


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, str) and not value.isdigit():
        for port in container.get("ports") or ():
            if port.get("name") == value:
                return int(port["containerPort"])
        raise ValueError(f"port {value!r} is not a named port of the container")
    return int(value)


async def run_probe(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    pod_ip: str,
    env: Mapping[str, str],
    dial: Dial | None = None,
) -> tuple[bool, str]:
    """One attempt: ``(success, message)``. ``dial``: how to reach the pod (pod-network mode)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        async with asyncio.timeout(timeout):
            if "httpGet" in probe and dial is not None:
                return await _http_dialed(probe["httpGet"], container, pod_ip, dial)
            if "httpGet" in probe:
                return await _http(probe["httpGet"], container, pod_ip)
            if "tcpSocket" in probe:
                port = _port(probe["tcpSocket"]["port"], container)
                host = probe["tcpSocket"].get("host") or pod_ip
                _, writer = await (dial or asyncio.open_connection)(host, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return True, ""
            if "exec" in probe:
                return await _exec(list(probe["exec"].get("command") or ()), env)
            if "grpc" in probe and dial is not None:
                return await _grpc_dialed(probe["grpc"], pod_ip, dial, timeout)
            if "grpc" in probe:
                return await _grpc(probe["grpc"], pod_ip, timeout)
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


async def _http_dialed(
    spec: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, dial: Dial
) -> tuple[bool, str]:
    """An HTTP/1.1 GET over a connection from ``dial``; only the status line matters."""
    host = str(spec.get("host") or pod_ip)
    port = _port(spec["port"], container)
    reader, writer = await dial(host, port)
    try:
        if str(spec.get("scheme", "HTTP")).upper() == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            await writer.start_tls(context)
        headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.32", "Connection": "close"}
        headers.update({h["name"]: h["value"] for h in spec.get("httpHeaders") or ()})
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {spec.get('path', '/')} HTTP/1.1\r\n{head}\r\n".encode("latin-1"))
        await writer.drain()
        parts = (await reader.readline()).split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, "HTTP probe failed: malformed response"
        status = int(parts[1])
    finally:
        writer.close()
    ok = 200 <= status < 400
    return ok, "" if ok else f"HTTP probe failed with statuscode: {status}"


async def _grpc_dialed(spec: Mapping[str, Any], pod_ip: str, dial: Dial, timeout: float) -> tuple[bool, str]:
    """The gRPC health check through a one-off relay: gRPC makes its own sockets, in the host's
    network, so it talks to a relay on 127.0.0.1 that ``dial`` connects into the pod network."""
    relays = Relays()
    try:
        port = await relays.serve(loopback_listener(), lambda: dial(pod_ip, int(spec["port"])))
        return await _grpc({**spec, "port": port}, "127.0.0.1", timeout)
    finally:
        await relays.close()


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


async def _grpc(spec: Mapping[str, Any], pod_ip: str, timeout: float = 1.0) -> tuple[bool, str]:
    """grpc.health.v1 Check on a blocking channel in a thread: grpc.aio binds to the first event
    loop that uses it, and a test process may run other gRPC servers on loops of its own."""
    try:
        grpc: Any = importlib.import_module("grpc")
        health: Any = importlib.import_module("grpc_health.v1.health_pb2")
        stubs: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")
    except ImportError:
        return False, "gRPC probes need grpcio and grpcio-health-checking installed"

    def check() -> tuple[bool, str]:
        with grpc.insecure_channel(f"{pod_ip}:{int(spec['port'])}") as channel:
            try:
                reply = stubs.HealthStub(channel).Check(
                    health.HealthCheckRequest(service=spec.get("service", "")), timeout=timeout
                )
            except grpc.RpcError as error:
                return False, f"failed to connect service {pod_ip}:{spec['port']}: {error.code()}"
        ok = reply.status == health.HealthCheckResponse.SERVING
        return ok, "" if ok else f"service unhealthy (responded with {reply.status})"

    return await asyncio.to_thread(check)


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
        dial: Dial | None = None,
    ) -> None:
        self.probe, self.container, self.pod_ip, self.env = probe, container, pod_ip, env
        self.dial = dial
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
            ok, message = await run_probe(self.probe, self.container, self.pod_ip, self.env, self.dial)
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
