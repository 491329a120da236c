"""A function server process and how to reach it: TCP on a port, or a Unix socket.

The project's runtime and the watchdog are started on a Unix socket the
scheduler binds and hands over (NANOFAAS_LISTEN_FD): a local call then skips
TCP's loopback work, and the first request needs no readiness polling — the
kernel queues it until the server accepts. A user's own server gets PORT and
is polled on /health until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.function_protocol import HEALTH_PATH
from nanofaas_scheduler.dispatch.hop_client import HopClient, HopError, Target
from nanofaas_scheduler.dispatch.http_invoke import invoke
from nanofaas_scheduler.dispatch.local.lifeline import LIFELINE_FD_ENV, Lifeline
from nanofaas_scheduler.dispatch.local.process import ServerProcess, StartError, describe_exit, free_port

_HEALTH_MAX_BYTES = 64 * 1024


# nanofaas-<owner pid>-<random>: the scheduler's socket directory; nanofaas-file-<pid>-<random>:
# a watchdog's FILE-mode work directory.
_OWNED_DIR = re.compile(r"nanofaas-(?:file-)?(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_directories(base: str | None = None) -> list[str]:
    """Remove the runtime directories left by a scheduler or watchdog that died without cleaning up.

    Only ours (our user's, named as above) and only when the pid in the name is gone; a
    directory whose pid was reused by another process is left, which errs on the safe side.
    Returns what was removed.
    """
    root = Path(base or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED_DIR.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


class SocketDirectory:
    """A private directory for the Unix sockets of this scheduler's function servers.

    Named for this process (see remove_stale_directories), so a later scheduler can tell
    a leftover of a dead one from a live one's.
    """

    def __init__(self) -> None:
        self._path: Path | None = None

    def new_socket(self) -> tuple[socket.socket, str]:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix=f"nanofaas-{os.getpid()}-"))
        path = str(self._path / f"{uuid.uuid4().hex[:12]}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1024)
        return sock, path

    def remove(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._path)


class Replica:
    """One server process plus the client and target that reach it."""

    def __init__(self, server: ServerProcess, target: Target, path: str | None) -> None:
        self.server = server
        self.target = target
        self._client = HopClient()
        self._path = path

    def invoke(
        self, attempt: Attempt, *, keep_alive: bool = True, deadline: float | None = None
    ) -> Coroutine[Any, Any, Outcome]:
        """The attempt's outcome; at `deadline` (loop time) hop_client.Late, the request still open."""
        return invoke(self._client, self.target, attempt, keep_alive=keep_alive, deadline=deadline)

    def alive(self) -> bool:
        return self.server.alive()

    async def wait_ready(self, timeout: float) -> None:
        """Return when the server serves; StartError (process stopped) if it dies or times out."""
        if self._path is None:
            await self.server.wait_ready(timeout)
            return
        try:
            async with asyncio.timeout(timeout):
                # Queued by the kernel until the runtime accepts: one request, no polling.
                response = await self._client.request(
                    self.target, "GET", HEALTH_PATH, {}, max_body=_HEALTH_MAX_BYTES
                )
                if response.status == 200:
                    return
                problem = f"health answered HTTP {response.status}"
        except TimeoutError:
            problem = f"not ready within {timeout:g}s"
        except HopError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        raise await self._start_failed(problem)

    async def _start_failed(self, problem: str) -> StartError:
        # A refused connection usually means the process is on its way out: let it finish
        # so its exit code and last words (e.g. the handler import error) can be reported.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_exit(), 1.0)
        if self.alive():
            await self.stop(grace=0.0)
            return StartError(problem)
        await self.stop(grace=0.0)
        tail = self.server.stderr_tail()
        code = self.server.returncode
        how = describe_exit(code) if code is not None else "stopped"
        return StartError(how + (f": {tail}" if tail else ""))

    async def stop(self, grace: float = 1.0) -> None:
        try:
            await self.server.stop(grace)
        finally:
            await self._client.close()
            if self._path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._path)


async def start_replica(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    sockets: SocketDirectory | None,
    log_sink: Callable[[bytes], None],
    lifeline: Lifeline,
) -> Replica:
    """Spawn a server: on a handed-over Unix socket when `sockets` is given, else on a TCP port.

    The project's servers (those on a socket) watch the lifeline; a user's own server gets
    the parent-death signal instead (see lifeline.py).
    """
    if sockets is None:
        server = await ServerProcess.start(
            argv, env=env, port=free_port(), log_sink=log_sink, preexec=lifeline.preexec
        )
        return Replica(server, Target("127.0.0.1", server.port), None)
    sock, path = sockets.new_socket()
    lifeline_fd = lifeline.read_fd()
    try:
        server = await ServerProcess.start(
            argv,
            env={**env, "NANOFAAS_LISTEN_FD": str(sock.fileno()), LIFELINE_FD_ENV: str(lifeline_fd)},
            port=0,
            pass_fds=(sock.fileno(), lifeline_fd),
            log_sink=log_sink,
        )
    except BaseException:
        os.unlink(path)
        raise
    finally:
        sock.close()  # the child has its own copy; if it dies, connecting fails at once
    return Replica(server, Target.unix(path), path)
