"""Measure the watchdog: spawn-to-first-200 on /health, and the cost it adds to one STDIO invocation.

    .venv/bin/python runtimes/python/tools/measure_watchdog.py [-n 20]

Reports median/min/max over N runs after one untimed warm-up; there is no pass/fail.

* Start-up, two ways the platform can start it: with a listening socket bound before
  the spawn and passed in NANOFAAS_LISTEN_FD (the first GET /health is sent at once and
  queued by the kernel), and with PORT (polled every 2 ms until it answers, as a
  readiness probe would).
* One STDIO invocation, sequentially, through a warm watchdog (POST /invoke on a
  keep-alive connection) against `invoke_stdio` called directly on uvloop (what the
  scheduler did in-process before), for three commands: `cat` (the request is valid
  JSON, so it is its own output), a trivial `python -c`, and the Python runtime's STDIO
  mode with a trivial handler.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import uvloop

from nanofaas_runtime.outcome import OutcomeKind
from nanofaas_runtime.watchdog.oneshot import invoke_stdio
from nanofaas_runtime.watchdog.process import free_port

HANDLER = "def handle(request, context=None):\n    return {'echo': request['input']}\n"
REQUEST = b'{"input": {"x": 1}, "metadata": {}}'
_POLL_SECONDS = 0.002


def base_env(handler_dir: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": handler_dir,
        "HANDLER_MODULE": "handler",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def watchdog_argv(command: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "nanofaas_runtime.watchdog", "--mode", "stdio", "--", *command]


def _get_health(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return connection.recv(65536)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.communicate(timeout=10)


def start_with_fd(handler_dir: str) -> float:
    """Seconds from spawn until the first /health response, on a socket bound before the spawn."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        started = time.perf_counter()
        process = subprocess.Popen(
            watchdog_argv(["cat"]),
            env=base_env(handler_dir, NANOFAAS_LISTEN_FD=str(listener.fileno())),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=[listener.fileno()],
        )
        try:
            response = _get_health(listener.getsockname()[1])
            elapsed = time.perf_counter() - started
        finally:
            _stop(process)
    if not response.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"health answered {response[:80]!r}")
    return elapsed


def start_with_port(handler_dir: str) -> float:
    """Seconds from spawn until /health first answers 200 on PORT, polling every 2 ms."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        watchdog_argv(["cat"]),
        env=base_env(handler_dir, PORT=str(port), HOST="127.0.0.1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = started + 30
        while time.perf_counter() < deadline:
            try:
                if _get_health(port).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(_POLL_SECONDS)
        raise RuntimeError("the watchdog did not answer /health within 30 s")
    finally:
        _stop(process)


def through_watchdog(handler_dir: str, command: Sequence[str], runs: int) -> list[float]:
    """Milliseconds per invocation through a warm watchdog, one keep-alive connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        process = subprocess.Popen(
            watchdog_argv(command),
            env=base_env(handler_dir, NANOFAAS_LISTEN_FD=str(listener.fileno())),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[listener.fileno()],
        )
        connection = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1], timeout=30)
        try:
            samples = []
            for run in range(runs + 1):
                started = time.perf_counter()
                connection.request("POST", "/invoke", REQUEST, {"Content-Type": "application/json"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"invoke answered {response.status}: {body[:200]!r}")
                if run:  # the first one warms the page cache and the .pyc files
                    samples.append((time.perf_counter() - started) * 1000)
            return samples
        finally:
            connection.close()
            _stop(process)


def direct(handler_dir: str, command: Sequence[str], runs: int) -> list[float]:
    """Milliseconds per `invoke_stdio` call, in-process on uvloop."""

    async def measure() -> list[float]:
        samples = []
        for run in range(runs + 1):
            started = time.perf_counter()
            outcome = await invoke_stdio(command, REQUEST, env=base_env(handler_dir), timeout=30)
            if outcome.kind is not OutcomeKind.SUCCESS:
                raise RuntimeError(f"invoke_stdio: {outcome.message}")
            if run:
                samples.append((time.perf_counter() - started) * 1000)
        return samples

    return uvloop.run(measure())


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<52} median {statistics.median(samples):6.1f} ms"
        f"  min {min(samples):6.1f} ms  max {max(samples):6.1f} ms"
    )


def repeat(measure: Callable[[str], float], handler_dir: str, runs: int) -> list[float]:
    measure(handler_dir)  # warm-up, not counted
    return [measure(handler_dir) * 1000 for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')}  {platform.python_implementation()} {platform.python_version()}  "
        f"{platform.machine()}  {os.cpu_count()} CPUs  {platform.platform()}"
    )
    with tempfile.TemporaryDirectory() as handler_dir:
        Path(handler_dir, "handler.py").write_text(HANDLER)
        print(
            line(
                "spawn-to-first-200 /health (NANOFAAS_LISTEN_FD)",
                repeat(start_with_fd, handler_dir, args.runs),
            )
        )
        print(
            line(
                "spawn-to-first-200 /health (PORT, 2 ms poll)",
                repeat(start_with_port, handler_dir, args.runs),
            )
        )
        commands = {
            "cat": ["cat"],
            "python -c": [sys.executable, "-c", "import sys; sys.stdin.read(); print('null')"],
            "nanofaas-runtime --mode stdio": [sys.executable, "-m", "nanofaas_runtime", "--mode", "stdio"],
        }
        for name, command in commands.items():
            print(line(f"{name}: invoke_stdio directly", direct(handler_dir, command, args.runs)))
            print(line(f"{name}: through the watchdog", through_watchdog(handler_dir, command, args.runs)))


if __name__ == "__main__":
    main()
