"""The platform under test: registry, scheduler and gateway as real processes on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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

    def pids(self) -> dict[str, list[int]]:
        """The processes whose CPU we attribute: each service, and the function processes."""
        groups = {name: [child.pid] for name, child in self.children.items()}
        groups["functions"] = descendants(self.children["scheduler"].pid)
        return groups

    def rss(self) -> dict[str, int]:
        return {name: rss_bytes(child.pid) for name, child in self.children.items()}

    def stop(self) -> dict[str, int]:
        return {name: self.children[name].stop() for name in reversed(SERVICES) if name in self.children}


def start_platform(log_dir: Path, **overrides: str) -> Platform:
    gateway, scheduler, registry = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(
        NANOFAAS_GATEWAY_PORT=str(gateway),
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_ADDRESS=f"127.0.0.1:{scheduler}",
        NANOFAAS_REGISTRY_ADDRESS=f"127.0.0.1:{registry}",
        NANOFAAS_CALLBACK_URL=f"http://127.0.0.1:{gateway}",
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    platform = Platform(base_url=f"http://127.0.0.1:{gateway}")
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
