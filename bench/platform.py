"""The platform under test: registry, scheduler and gateway as real processes on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.config import HANDLERS_DIR
from bench.procs import Child, descendants, free_port, rss_bytes, spawn, wait_http

SERVICES = ("registry", "scheduler", "gateway")
RUNTIME_IMAGE = "nanofaas/python-runtime:latest"


@dataclass
class Platform:
    base_url: str
    children: dict[str, Child] = field(default_factory=dict)
    socket_dir: str = ""  # the services' Unix sockets, removed by stop()

    def pids(self) -> dict[str, list[int]]:
        """The processes whose CPU we attribute: each service, and the function processes."""
        groups = {name: [child.pid] for name, child in self.children.items()}
        groups["functions"] = descendants(self.children["scheduler"].pid)
        return groups

    def rss(self) -> dict[str, int]:
        return {name: rss_bytes(child.pid) for name, child in self.children.items()}

    def stop(self) -> dict[str, int]:
        codes = {name: self.children[name].stop() for name in reversed(SERVICES) if name in self.children}
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        return codes


def start_platform(log_dir: Path, **overrides: str) -> Platform:
    """The three services on one machine, as `make up` runs them: gRPC between them over Unix
    sockets in a private directory (TCP ports still open, for health checks and tools)."""
    gateway, scheduler, registry = free_port(), free_port(), free_port()
    # Short and private: a socket path has at most 107 bytes, and only we may connect.
    socket_dir = tempfile.mkdtemp(prefix="nanofaas-bench-")
    scheduler_socket, registry_socket = f"{socket_dir}/scheduler.sock", f"{socket_dir}/registry.sock"
    env = dict(os.environ)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(
        NANOFAAS_GATEWAY_PORT=str(gateway),
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_SOCKET=scheduler_socket,
        NANOFAAS_REGISTRY_SOCKET=registry_socket,
        NANOFAAS_SCHEDULER_ADDRESS=f"unix:{scheduler_socket}",
        NANOFAAS_REGISTRY_ADDRESS=f"unix:{registry_socket}",
        NANOFAAS_CALLBACK_URL=f"http://127.0.0.1:{gateway}",
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    platform = Platform(base_url=f"http://127.0.0.1:{gateway}", socket_dir=socket_dir)
    try:
        for name in SERVICES:
            platform.children[name] = spawn(name, [sys.executable, "-m", f"nanofaas_{name}"], env, log_dir)
        wait_http(f"{platform.base_url}/readyz", list(platform.children.values()))
    except BaseException:
        platform.stop()
        raise
    return platform


def noop_spec(name: str, mode: str = "WARM", **fields: Any) -> dict[str, Any]:
    """A no-op function on the project's Python runtime, loaded from bench/handlers."""
    env = {"PYTHONPATH": str(HANDLERS_DIR), "HANDLER_MODULE": "noop", "HANDLER_FUNCTION": "handle"}
    return {"name": name, "image": RUNTIME_IMAGE, "executionMode": mode, "env": env, **fields}


def endpoint_spec(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": RUNTIME_IMAGE, "executionMode": "ENDPOINT", "endpointUrl": url, **fields}


def request_json(method: str, url: str, body: Any = None, timeout_s: float = 60.0) -> tuple[int, Any]:
    """One blocking REST call, for set-up steps outside any timed section."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def register(base_url: str, spec: dict[str, Any]) -> None:
    status, body = request_json("POST", f"{base_url}/v1/functions", spec)
    if status != 201:
        raise RuntimeError(f"registering {spec['name']} failed: {status} {body}")


async def _register_many(base_url: str, specs: Sequence[dict[str, Any]], parallel: int) -> None:
    queue = iter(specs)
    failures: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for spec in queue:
            async with session.post(f"{base_url}/v1/functions", json=spec) as response:
                if response.status != 201:
                    failures.append(f"{spec['name']}: {response.status} {await response.text()}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
    if failures:
        raise RuntimeError(f"{len(failures)} registrations failed, first: {failures[0]}")


def register_many(base_url: str, specs: Iterable[dict[str, Any]], parallel: int = 32) -> None:
    """Register specs over REST with `parallel` requests in flight (10,000 take seconds, not minutes)."""
    asyncio.run(_register_many(base_url, list(specs), parallel))


def warm_up(url: str, count: int, body: bytes = b'{"input":null}', parallel: int = 8) -> None:
    """Send `count` requests so warm pools and connection pools exist before a timed run."""

    async def run() -> None:
        remaining = iter(range(count))

        async def worker(session: aiohttp.ClientSession) -> None:
            for _ in remaining:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(worker(session) for _ in range(parallel)))

    asyncio.run(run())
