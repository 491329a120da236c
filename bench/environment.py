"""What the report must say about where it ran: machine, interpreter, wrk and package versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "nanofaas-gateway",
    "nanofaas-scheduler",
    "nanofaas-registry",
    "nanofaas-runtime",
    "grpcio",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "orjson",
    "protobuf",
    "functions-framework",
    "gunicorn",
    "flask",
    "waitress",
    "matplotlib",
)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB RAM"
    return "unknown RAM"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        return "not installed"
    return (done.stdout + done.stderr).splitlines()[0].strip() if done.stdout or done.stderr else "unknown"


def _commit() -> str:
    """The measured tree: services are installed editable, so uncommitted changes count too."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on a shared machine skews every figure."""
    return [float(part) for part in Path("/proc/loadavg").read_text().split()[:3]]


def describe() -> dict[str, Any]:
    return {
        "commit": _commit(),
        "loadavg_at_start": loadavg(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total": _mem_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _wrk(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
