"""Measure the runtime's cold start: spawn-to-first-result in HTTP and STDIO mode, and import time.

    .venv/bin/python runtimes/python/tools/measure_cold_start.py [-n 20]

Reports median/min/max over N runs; there is no pass/fail. A trivial handler is
written to a temporary directory. HTTP mode is measured the way the scheduler
starts a WARM replica: the listening socket is bound before the spawn and passed
as NANOFAAS_LISTEN_FD, so the first request is sent at once (no readiness poll)
and the clock stops when its response has been read.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HANDLER = "def handle(request, context=None):\n    return {'echo': request['input']}\n"
REQUEST = b'{"input": {"x": 1}, "metadata": {}}'
IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def runtime_env(handler_dir: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": handler_dir,
        "HANDLER_MODULE": "handler",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def stdio_once(handler_dir: str) -> float:
    """Seconds from spawn until the output is read and the process has exited."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "nanofaas_runtime", "--mode", "stdio"],
        input=REQUEST,
        env=runtime_env(handler_dir),
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or b'"echo"' not in result.stdout:
        raise RuntimeError(f"stdio run failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def http_once(handler_dir: str) -> float:
    """Seconds from spawn until the first /invoke response has been read."""
    return _http_run(handler_dir, ())[0]


def _http_run(handler_dir: str, python_flags: tuple[str, ...]) -> tuple[float, bytes]:
    """Spawn HTTP mode, answer one request, stop it: (seconds to the first result, stderr)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "nanofaas_runtime"],
            env=runtime_env(handler_dir, NANOFAAS_LISTEN_FD=str(listener.fileno())),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=[listener.fileno()],
        )
        try:
            response = _post_invoke(port)
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    if b" 200 " not in response.split(b"\r\n", 1)[0] or b'"echo"' not in response:
        raise RuntimeError(f"http run failed: {response[:200]!r} {stderr.decode(errors='replace')}")
    return elapsed, stderr


def _post_invoke(port: int) -> bytes:
    request = (
        b"POST /invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(REQUEST)).encode() + b"\r\n\r\n" + REQUEST
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def import_times(handler_dir: str, mode: str) -> tuple[int, list[tuple[str, int]]]:
    """Total microseconds of top-level imports, and the slowest ones, from `python -X importtime`."""
    if mode == "http":
        stderr = _http_run(handler_dir, ("-X", "importtime"))[1]
    else:
        argv = [sys.executable, "-X", "importtime", "-m", "nanofaas_runtime", "--mode", mode]
        stderr = subprocess.run(
            argv, input=REQUEST, env=runtime_env(handler_dir), capture_output=True, check=False
        ).stderr
    top_level = []
    for line in stderr.decode(errors="replace").splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match and len(match.group(3)) == 1:
            top_level.append((match.group(4), int(match.group(2))))
    top_level.sort(key=lambda item: item[1], reverse=True)
    return sum(us for _, us in top_level), top_level[:8]


def summarise(name: str, measure: Callable[[str], float], handler_dir: str, runs: int) -> None:
    measure(handler_dir)  # warm the OS page cache and the .pyc files; not counted
    samples = [measure(handler_dir) * 1000 for _ in range(runs)]
    print(
        f"{name:<6} spawn-to-first-result over {runs} runs: median {statistics.median(samples):6.1f} ms"
        f"  min {min(samples):6.1f} ms  max {max(samples):6.1f} ms"
    )


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
        summarise("stdio", stdio_once, handler_dir, args.runs)
        summarise("http", http_once, handler_dir, args.runs)
        for mode in ("stdio", "http"):
            total, slowest = import_times(handler_dir, mode)
            listed = ", ".join(f"{name} {us / 1000:.1f}" for name, us in slowest)
            print(f"{mode:<6} top-level imports: {total / 1000:.1f} ms; slowest (ms): {listed}")


if __name__ == "__main__":
    main()
