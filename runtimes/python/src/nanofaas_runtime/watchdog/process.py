"""Process plumbing shared by the watchdog modes: spawning, process groups, bounded stream draining."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from nanofaas_runtime.process_tree import kill_tree

STDERR_TAIL_BYTES = 4096
_READ_CHUNK = 64 * 1024


class StartError(Exception):
    """The command could not be started, or its server never became ready."""


class _ExitWatchingProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol plus a future resolved the moment the process exits.

    `Process.wait()` resolves only once every pipe is closed as well, which never happens
    while a leftover grandchild still holds one; supervisors must act on the exit itself.
    When the leader exits, whatever is left of its process group is killed at once: the
    group id cannot have been reused while members remain, whereas signalling it any later
    could hit an unrelated group that reused the id.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self._subprocess_transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's process transport has the same interface without subclassing asyncio's.
        self._subprocess_transport = cast("asyncio.SubprocessTransport", transport)

    def process_exited(self) -> None:
        super().process_exited()
        transport = self._subprocess_transport
        if transport is None or self.exited.done():
            return
        signal_process_group(transport.get_pid(), signal.SIGKILL)
        returncode = transport.get_returncode()
        self.exited.set_result(returncode if returncode is not None else -1)


@dataclass(frozen=True, slots=True, eq=False)
class Child:
    """A spawned process with a prompt exit notification."""

    process: asyncio.subprocess.Process
    exited: asyncio.Future[int]  # the exit status (negative: killed by that signal)
    transport: asyncio.SubprocessTransport

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal_group(self, sig: int) -> None:
        """Signal the whole process group, but never after the leader's exit (see above)."""
        if not self.exited.done():
            signal_process_group(self.pid, sig)

    async def kill_group(self) -> int:
        """SIGKILL the process group and every descendant, and wait for the leader's exit status.

        Descendants by parentage too: a command's child that called setsid() left the group.
        """
        if not self.exited.done():
            kill_tree(self.pid, include_root=True)
        self.signal_group(signal.SIGKILL)
        return await asyncio.shield(self.exited)

    def close(self) -> None:
        """Release our ends of its pipes (the process must be dead by now)."""
        self.transport.close()


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    stdin: int,
    stdout: int,
    stderr: int,
    pass_fds: Sequence[int] = (),
) -> Child:
    """Start `argv` without a shell, with exactly `env`, as the leader of a new session/process group.

    Its own group lets a timeout kill everything it started; raises StartError when it cannot start.
    """
    if not argv:
        raise StartError("empty command")
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _ExitWatchingProtocol(limit=_READ_CHUNK, loop=loop),
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartError(f"cannot start {argv[0]!r}: {reason}") from exc
    process = asyncio.subprocess.Process(transport, protocol, loop)
    return Child(process=process, exited=protocol.exited, transport=transport)


def signal_process_group(pid: int, sig: int) -> bool:
    """Send `sig` to the process group led by `pid`; False if no such group is left."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def kill_process_group(pid: int) -> None:
    """SIGKILL every process in the group led by `pid` (children and grandchildren alike).

    Reaping the leader stays with its parent; a group that is already gone is not an error.
    """
    signal_process_group(pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers bind it promptly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def describe_signal(returncode: int) -> str:
    """`SIGKILL` for a returncode of -9 (asyncio's convention for death by a signal)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


MAX_LINE_BYTES = 64 * 1024


class StreamTail:
    """Drains a pipe continuously (the child never blocks on it) and keeps only its last bytes.

    With a `sink`, every complete line (at most `MAX_LINE_BYTES`, longer ones are
    split) is also handed on as it arrives, e.g. to the parent's log stream.
    """

    def __init__(
        self,
        stream: asyncio.StreamReader | None,
        limit: int = STDERR_TAIL_BYTES,
        sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._sink = sink
        self._pending = bytearray()
        self._task: asyncio.Task[None] | None = (
            asyncio.create_task(self._drain(stream)) if stream is not None else None
        )

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self._buffer += chunk
            if len(self._buffer) > 2 * self._limit:
                del self._buffer[: -self._limit]
            if self._sink is not None:
                self._forward(chunk)
        if self._sink is not None and self._pending:
            self._sink(bytes(self._pending))
            self._pending.clear()

    def _forward(self, chunk: bytes) -> None:
        assert self._sink is not None
        self._pending += chunk
        while (end := self._pending.find(b"\n")) >= 0 or len(self._pending) >= MAX_LINE_BYTES:
            cut = end if 0 <= end < MAX_LINE_BYTES else MAX_LINE_BYTES
            line = bytes(self._pending[:cut])
            del self._pending[: cut + (1 if cut == end else 0)]
            self._sink(line)

    async def finish(self, timeout: float) -> None:
        """Wait (bounded) for end of stream, then stop draining."""
        if self._task is None:
            return
        if not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)
        await cancel_task(self._task)

    def text(self) -> str:
        return bytes(self._buffer[-self._limit :]).decode("utf-8", "replace").strip()


class OutputTooLarge(Exception):
    """The output stream went over its byte limit."""


async def read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read to end of stream, raising OutputTooLarge as soon as more than `limit` bytes arrive."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise OutputTooLarge(f"output exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def cancel_task(task: asyncio.Future[Any]) -> None:
    """Cancel and wait for `task` without swallowing a cancellation of the caller itself."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark any failure as retrieved; the caller decides what matters
