"""Function server processes on this machine: spawned without a shell, each leading its own process group.

The scheduler only ever starts *servers* here (the Python runtime, the
watchdog wrapping a STDIO/FILE command, a user's own HTTP server); what runs
inside them is the function side's business. Killing the group on exit or
stop leaves no grandchild behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from nanofaas_scheduler.dispatch.local.orphans import REAPER
from nanofaas_scheduler.dispatch.local.process_tree import kill_tree

_STDERR_TAIL_BYTES = 4096
_MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
_STDERR_DRAIN_SECONDS = 0.5
_FIRST_POLL_DELAY = 0.002
# Poll densely while a fast server may come up any moment, then back off for slow starters.
_FAST_POLL_CAP = 0.005
_FAST_POLL_SECONDS = 1.0
_SLOW_POLL_CAP = 0.05
_MAX_PROBE_SECONDS = 1.0


class StartError(Exception):
    """The process could not be started, or never became ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it promptly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _ExitWatcher(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves `exited` the moment the leader exits, and kills what is left of its group then.

    (Process.wait() would also wait for every pipe to close, which a leftover
    grandchild can delay forever; the group id cannot be reused while members
    remain, so killing it right at the leader's exit is safe.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_READ_CHUNK, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        # Not `_transport`: the base class clears that one when the process exits.
        self._process: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._process = cast("asyncio.SubprocessTransport", transport)

    def process_exited(self) -> None:
        super().process_exited()
        if self._process is None or self.exited.done():
            return
        pid = self._process.get_pid()
        _signal_group(pid, signal.SIGKILL)
        REAPER.server_exited(pid)  # what left the group was re-parented to us: killed now
        code = self._process.get_returncode()
        self.exited.set_result(code if code is not None else -1)


class _LineForwarder:
    """Drains stderr continuously, hands each line to `sink` and keeps a short tail for error messages."""

    def __init__(self, stream: asyncio.StreamReader, sink: Callable[[bytes], None] | None) -> None:
        self._sink = sink
        self._tail = bytearray()
        self._pending = bytearray()
        self._task = asyncio.ensure_future(self._drain(stream))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self._tail += chunk
            if len(self._tail) > 2 * _STDERR_TAIL_BYTES:
                del self._tail[:-_STDERR_TAIL_BYTES]
            if self._sink is not None:
                self._pending += chunk
                while (end := self._pending.find(b"\n")) >= 0 or len(self._pending) >= _MAX_LINE_BYTES:
                    cut = end if 0 <= end < _MAX_LINE_BYTES else _MAX_LINE_BYTES
                    self._sink(bytes(self._pending[:cut]))
                    del self._pending[: cut + (1 if cut == end else 0)]
        if self._sink is not None and self._pending:
            self._sink(bytes(self._pending))

    async def finish(self) -> None:
        if not self._task.done():
            await asyncio.wait({self._task}, timeout=_STDERR_DRAIN_SECONDS)
        self._task.cancel()

    def text(self) -> str:
        return bytes(self._tail[-_STDERR_TAIL_BYTES:]).decode("utf-8", "replace").strip()


class ServerProcess:
    """A function server in its own process group; stderr forwarded line by line, stdout discarded."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _ExitWatcher,
        port: int,
        log_sink: Callable[[bytes], None] | None,
    ) -> None:
        self._transport = transport
        self._exited = protocol.exited
        self.pid = transport.get_pid()
        self.port = port
        stderr = protocol.stderr
        assert stderr is not None
        self._stderr = _LineForwarder(stderr, log_sink)

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        pass_fds: Sequence[int] = (),
        log_sink: Callable[[bytes], None] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> ServerProcess:
        """Spawn with exactly `env` plus PORT and HOST=127.0.0.1; StartError if it cannot start.

        `preexec` runs in the child before exec (see lifeline.parent_death_kill).
        """
        if not argv:
            raise StartError("empty command")
        loop = asyncio.get_running_loop()
        try:
            with REAPER.spawning():
                transport, protocol = await loop.subprocess_exec(
                    lambda: _ExitWatcher(loop),
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
                    start_new_session=True,
                    pass_fds=tuple(pass_fds),
                    preexec_fn=preexec,
                )
                if not protocol.exited.done():
                    REAPER.server_started(transport.get_pid())
        except OSError as exc:
            raise StartError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        return cls(transport, protocol, port, log_sink)

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def alive(self) -> bool:
        return not self._exited.done()

    def stderr_tail(self) -> str:
        return self._stderr.text()

    async def wait_exit(self) -> int:
        return await asyncio.shield(self._exited)

    async def wait_ready(self, timeout: float) -> None:
        """Poll GET /health on the port until 200; StartError (process stopped) on exit or timeout."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        delay = _FIRST_POLL_DELAY
        while True:
            if self._exited.done():
                await self.stop(grace=0.0)
                raise StartError(self._exit_message())
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self.stop(grace=0.0)
                tail = self.stderr_tail()
                raise StartError(f"not ready within {timeout:g}s" + (f": {tail}" if tail else ""))
            if await _health_ok(self.port, min(remaining, _MAX_PROBE_SECONDS)):
                return
            # Sleep, but wake at once if the process dies meanwhile.
            await asyncio.wait({self._exited}, timeout=max(min(delay, deadline - loop.time()), 0))
            cap = _FAST_POLL_CAP if loop.time() - started < _FAST_POLL_SECONDS else _SLOW_POLL_CAP
            delay = min(delay * 2, cap)

    async def stop(self, grace: float = 1.0) -> None:
        """SIGTERM the group, SIGKILL it and every descendant after `grace` seconds, reap the leader.

        Descendants by parentage as well as the group: a handler's child that called setsid()
        has left the group but not the tree (process_tree).
        """
        if grace > 0 and not self._exited.done():
            _signal_group(self.pid, signal.SIGTERM)
            await asyncio.wait({self._exited}, timeout=grace)
        if not self._exited.done():
            kill_tree(self.pid, include_root=True)
            _signal_group(self.pid, signal.SIGKILL)
            await asyncio.shield(self._exited)
        await self._stderr.finish()
        self._transport.close()

    def _exit_message(self) -> str:
        tail = self.stderr_tail()
        how = describe_exit(self._exited.result())
        return f"server {how} before becoming ready" + (f": {tail}" if tail else "")


async def _health_ok(port: int, timeout: float) -> bool:
    """One `GET /health` over a raw HTTP/1.1 connection: is the status 200?

    A status line is all a readiness probe needs; a refused localhost connect costs microseconds.
    """
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    parts = status_line.split(None, 2)
    return len(parts) >= 2 and parts[1] == b"200"
