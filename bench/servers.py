"""Servers measured without the platform: the warm runtime (the floor), peer runtimes and the
trivial ASGI app that proves the load generator's ceiling. Each serves the no-op handler."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.config import HANDLERS_DIR
from bench.procs import Child, descendants, free_port, spawn, wait_http


@dataclass
class Server:
    name: str
    url: str
    child: Child

    def pids(self) -> dict[str, list[int]]:
        return {self.name: [self.child.pid, *descendants(self.child.pid)]}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(HANDLERS_DIR), LOG_LEVEL="WARNING", **extra)
    return env


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (never a shim on PATH)."""
    return str(Path(sys.executable).parent / name)


def _argv(kind: str, port: int) -> tuple[list[str], dict[str, str], str]:
    """How to start `kind` on `port`, and the path it serves the handler on."""
    if kind == "runtime":
        env = _env(PORT=str(port), HOST="127.0.0.1", HANDLER_MODULE="noop", HANDLER_FUNCTION="handle")
        return [sys.executable, "-m", "nanofaas_runtime"], env, "/invoke"
    if kind == "functions-framework":
        source = str(HANDLERS_DIR / "noop_flask.py")
        argv = [_bin("functions-framework"), "--target=noop", f"--source={source}"]
        return [*argv, "--host=127.0.0.1", f"--port={port}"], _env(), "/"
    if kind == "flask-waitress":
        return [sys.executable, "-m", "waitress_app", str(port)], _env(), "/"
    if kind == "trivial-asgi":
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "trivial_asgi:app",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
        return (
            [*argv, "--no-access-log", "--log-level=warning", "--host=127.0.0.1", f"--port={port}"],
            _env(),
            "/",
        )
    raise ValueError(f"unknown server {kind!r}")


@contextmanager
def running(kind: str, log_dir: Path, **extra_env: str) -> Iterator[Server]:
    """Start a server, wait until it answers the invoke path, and always stop it afterwards."""
    port = free_port()
    argv, env, path = _argv(kind, port)
    env.update(extra_env)
    child = spawn(kind, argv, env, log_dir)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wait_http(url, [child], method="POST")
        yield Server(kind, url, child)
    finally:
        child.stop(grace_s=10)
