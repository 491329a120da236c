"""HTTP process mode: a function's own long-lived server (WARM replica or one JOB run)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping, Sequence

from nanofaas_runtime.protocol import HEALTH_PATH
from nanofaas_runtime.watchdog.process import (
    Child,
    StartError,
    StreamTail,
    describe_signal,
    spawn,
)

_FIRST_POLL_DELAY = 0.002
# Poll densely while a fast server (the Python runtime is ready in ~70 ms) may come up any moment,
# then back off for slow starters: a refused localhost connect costs microseconds.
_FAST_POLL_CAP = 0.005
_FAST_POLL_SECONDS = 1.0
_SLOW_POLL_CAP = 0.05
_MAX_PROBE_SECONDS = 1.0
_STDERR_DRAIN_SECONDS = 0.5


class ServerProcess:
    """A server started from any command, listening on 127.0.0.1:`port`, in its own process group.

    stderr is drained continuously into a bounded tail (for error messages); stdout is discarded.
    """

    def __init__(self, child: Child, port: int, log_sink: Callable[[bytes], None] | None = None) -> None:
        self._child = child
        self.port = port
        self.pid = child.pid
        self._stderr = StreamTail(child.process.stderr, sink=log_sink)
        self._exited = child.exited

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        cwd: str | None = None,
        pass_fds: Sequence[int] = (),
        log_sink: Callable[[bytes], None] | None = None,
    ) -> ServerProcess:
        """Spawn the server with `env` plus PORT and HOST=127.0.0.1; raises StartError if it cannot start.

        `pass_fds` lets a caller hand over a pre-bound listening socket (NANOFAAS_LISTEN_FD);
        `log_sink` receives each line the server writes to stderr (its logs).
        """
        child = await spawn(
            argv,
            env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=pass_fds,
        )
        return cls(child, port, log_sink)

    @property
    def returncode(self) -> int | None:
        """The exit status once dead (negative: killed by that signal), else None."""
        return self._exited.result() if self._exited.done() else None

    def alive(self) -> bool:
        return not self._exited.done()

    def stderr_tail(self) -> str:
        return self._stderr.text()

    async def wait_exit(self) -> int:
        """The exit status once the process has died (negative: killed by that signal)."""
        return await asyncio.shield(self._exited)

    async def wait_ready(self, timeout: float) -> None:
        """Poll GET /health until 200, backing off from 2 ms (5 ms cap for the first second, then 50 ms).

        Raises StartError if the process exits first or `timeout` passes; in both cases
        the process (group) is stopped, so a failed start leaves nothing behind.
        """
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
            remaining = deadline - loop.time()
            if remaining > 0:
                # Sleep, but wake at once if the process dies meanwhile.
                await asyncio.wait({self._exited}, timeout=min(delay, remaining))
            cap = _FAST_POLL_CAP if loop.time() - started < _FAST_POLL_SECONDS else _SLOW_POLL_CAP
            delay = min(delay * 2, cap)

    async def stop(self, grace: float = 1.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds, and reap the leader."""
        if grace > 0:
            self._child.signal_group(signal.SIGTERM)
            await asyncio.wait({self._exited}, timeout=grace)
        await self._child.kill_group()
        await self._stderr.finish(_STDERR_DRAIN_SECONDS)
        self._child.close()

    def _exit_message(self) -> str:
        code = self._exited.result()
        how = f"killed by {describe_signal(code)}" if code < 0 else f"exited with code {code}"
        tail = self.stderr_tail()
        return f"server {how} before becoming ready" + (f": {tail}" if tail else "")


async def _health_ok(port: int, timeout: float) -> bool:
    """One `GET /health` over a raw HTTP/1.1 connection: is the status 200?

    Hand-rolled on purpose: a single status line is all a readiness probe needs.
    """
    request = f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
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
