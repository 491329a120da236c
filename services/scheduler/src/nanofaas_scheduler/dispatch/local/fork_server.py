"""JOB mode in milliseconds: per function, a fork server that forks a fresh runtime child per attempt.

The fork server is the project's runtime in `fork-server` mode (docs/runtime.md):
it has imported the runtime and the function's handler module once, and forks a
child per attempt that serves exactly that attempt over the function HTTP
protocol and exits. Every attempt still runs in a process that served nobody
before; it just skips the interpreter start and the imports (~60 ms on 2 cores).

The platform's side, here: the server is started like any runtime process (its
own session, stderr into the function's logs, the lifeline), plus one end of a
SOCK_SEQPACKET pair as its control channel. Per attempt we bind a Unix socket,
hand it over with the invocation's variables, and get the child's pid back; the
child's exit is reported on the same channel. Kills go through the server, which
alone knows whether the pid is still its unreaped child. A child that dies
mid-attempt drops the connection, which the protocol caller reports as CRASH.

When the server cannot start (the handler does not import, a thread was started at
import) `fork` returns None and the backend starts a process for the attempt as
before, so the error the user sees is unchanged; the function is not tried again
for `_REFUSED_S`. A server that dies is restarted by the next attempt (and
logged). Idle servers stop after `IDLE_S`, so an unused JOB function holds no
process. NANOFAAS_JOB_FORK_SERVER=0 turns the whole path off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.hop_client import HopClient, Target
from nanofaas_scheduler.dispatch.http_invoke import invoke
from nanofaas_scheduler.dispatch.local.lifeline import LIFELINE_FD_ENV, Lifeline
from nanofaas_scheduler.dispatch.local.process import ServerProcess, StartError, describe_exit
from nanofaas_scheduler.dispatch.local.replica import SocketDirectory

log = logging.getLogger(__name__)

SETTING = "NANOFAAS_JOB_FORK_SERVER"
CONTROL_FD_ENV = "NANOFAAS_FORK_CONTROL_FD"
MODE = "fork-server"
_READY_TIMEOUT_S = 30.0
# A server nobody forked from for this long is stopped (as the standby of spawned JOB processes).
IDLE_S = 60.0
# After a server could not start, the function's attempts are spawned for this long.
_REFUSED_S = 30.0
# How long a child that was told to die may take before the whole server goes instead.
_KILL_WAIT_S = 2.0
_MAX_MESSAGE = 64 * 1024


def enabled() -> bool:
    """On unless NANOFAAS_JOB_FORK_SERVER is 0/false/no/off."""
    return os.environ.get(SETTING, "").strip().lower() not in ("0", "false", "no", "off")


class ForkRefused(Exception):
    """The server will not fork (a thread appeared, fork failed): spawn instead."""


class ForkedChild:
    """One attempt's process, forked by a ForkServer: reached on its own socket, killed via the server."""

    def __init__(self, server: ForkServer, pid: int, path: str) -> None:
        self.server = server
        self.pid = pid
        self.target = Target.unix(path)
        self._path = path
        self._client = HopClient()
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def invoke(self, attempt: Attempt) -> Awaitable[Outcome]:
        """The one attempt it serves (it exits after answering: no keep-alive)."""
        return invoke(self._client, self.target, attempt, keep_alive=False)

    def alive(self) -> bool:
        return not self.exited.done()

    async def stop(self, grace: float = 0.5) -> None:
        """Wait up to `grace` for it to exit by itself (it does after answering), then kill its tree."""
        try:
            if grace > 0 and not self.exited.done():
                await asyncio.wait({self.exited}, timeout=grace)
            if not self.exited.done():
                self.server.kill(self.pid)
                await asyncio.wait({self.exited}, timeout=_KILL_WAIT_S)
            if not self.exited.done():  # the server does not answer: it goes, and its children with it
                await self.server.stop(grace=0.0)
        finally:
            await self._client.close()
            with contextlib.suppress(OSError):
                os.unlink(self._path)


class ForkServer:
    """One running fork server process and its control channel."""

    def __init__(self, process: ServerProcess, control: socket.socket, sockets: SocketDirectory) -> None:
        self.process = process
        self._control = control
        self._sockets = sockets
        self._ids = itertools.count(1)
        # Forks asked for: the future the child is handed to, and the socket it listens on.
        self._forks: dict[int, tuple[asyncio.Future[ForkedChild], str]] = {}
        self._children: dict[int, ForkedChild] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stopping: set[asyncio.Future[None]] = set()  # children nobody waited for
        self._drained = asyncio.Event()  # set while no child is running
        self._drained.set()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls,
        argv: list[str],
        env: dict[str, str],
        *,
        sockets: SocketDirectory,
        lifeline: Lifeline,
        log_sink: Callable[[bytes], None],
    ) -> ForkServer:
        """Spawn and wait until it says ready; StartError (with its last words) otherwise."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifeline_fd = lifeline.read_fd()
        try:
            process = await ServerProcess.start(
                argv,
                env={
                    **env,
                    "NANOFAAS_RUNTIME_MODE": MODE,
                    CONTROL_FD_ENV: str(theirs.fileno()),
                    LIFELINE_FD_ENV: str(lifeline_fd),
                },
                port=0,
                pass_fds=(theirs.fileno(), lifeline_fd),
                log_sink=log_sink,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        server = cls(process, ours, sockets)
        try:
            await server._wait_ready()
        except BaseException:
            await server.stop(grace=0.0)
            raise
        return server

    async def _wait_ready(self) -> None:
        exited = asyncio.ensure_future(self.process.wait_exit())
        waits: set[asyncio.Future[Any]] = {self._ready, exited}
        try:
            done, _ = await asyncio.wait(waits, timeout=_READY_TIMEOUT_S, return_when="FIRST_COMPLETED")
        finally:
            exited.cancel()
        if self._ready.done():
            self._ready.result()  # raises the refusal
            return
        if not done:
            raise StartError(f"fork server not ready within {_READY_TIMEOUT_S:g}s")
        await self.process.stop(grace=0.0)  # collects the rest of its stderr
        tail = self.process.stderr_tail()
        how = describe_exit(self.process.returncode if self.process.returncode is not None else -1)
        raise StartError(f"fork server {how}" + (f": {tail}" if tail else ""))

    def alive(self) -> bool:
        return self.process.alive() and not self._reader.done()

    @property
    def busy(self) -> int:
        return len(self._children)

    async def drained(self) -> None:
        """Return once no child of this server is running."""
        await self._drained.wait()

    async def fork(self, env: dict[str, str]) -> ForkedChild:
        """A fresh child for one attempt, listening on its own socket. ForkRefused / StartError if not."""
        if not self.alive():
            raise StartError("fork server is not running")
        sock, path = self._sockets.new_socket()
        request_id = next(self._ids)
        forked: asyncio.Future[ForkedChild] = asyncio.get_running_loop().create_future()
        self._forks[request_id] = (forked, path)
        try:
            request = orjson.dumps({"fork": request_id, "env": env})
            socket.send_fds(self._control, [request], [sock.fileno()])
        except OSError as exc:
            del self._forks[request_id]
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StartError(f"fork server unreachable: {exc}") from exc
        finally:
            sock.close()  # the server holds its own copy now
        # Cancelled meanwhile, the request stays pending: its child is stopped when it is reported.
        return await forked

    def kill(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            self._control.send(orjson.dumps({"kill": pid}))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(self._control, _MAX_MESSAGE):
                self._handle(orjson.loads(data))
        except (OSError, orjson.JSONDecodeError, ValueError):
            pass
        finally:
            self._gone()

    def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if "exited" in message:
            child = self._children.pop(message["exited"], None)
            if child is not None and not child.exited.done():
                child.exited.set_result(int(message.get("code", -1)))
            if not self._children:
                self._drained.set()
        elif "id" in message:
            pending = self._forks.pop(message["id"], None)
            if pending is None:
                return
            forked, path = pending
            if "pid" not in message:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                if not forked.done():
                    forked.set_exception(ForkRefused(str(message.get("error", "fork refused"))))
                return
            # Known from now on, so its exit (which may come next) is never missed.
            child = ForkedChild(self, int(message["pid"]), path)
            self._children[child.pid] = child
            self._drained.clear()
            if forked.done():  # the attempt gave up while it was forked: nobody will call
                stopping = asyncio.ensure_future(child.stop(grace=0.0))
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)
            else:
                forked.set_result(child)
        elif "ready" in message and not self._ready.done():
            self._ready.set_result(None)
        elif "unsafe" in message and not self._ready.done():
            self._ready.set_exception(ForkRefused(f"not safe to fork: {message['unsafe']}"))

    def _gone(self) -> None:
        """The channel closed: the server is dead, and so are its children (parent-death signal)."""
        error = StartError("fork server exited")
        if not self._ready.done():
            self._ready.set_exception(error)
        for forked, _path in self._forks.values():
            if not forked.done():
                forked.set_exception(error)
        for child in self._children.values():
            if not child.exited.done():
                child.exited.set_result(-1)
        self._forks.clear()
        self._children.clear()
        self._drained.set()

    async def stop(self, grace: float = 1.0) -> None:
        """Stop the server; it kills whatever children it still has on its way out."""
        try:
            await self.process.stop(grace=grace)
        finally:
            self._control.close()
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._gone()


@dataclass(slots=True)
class _Entry:
    revision: int
    task: asyncio.Task[ForkServer]
    last_used: float = field(default_factory=time.monotonic)


class ForkServers:
    """The fork server of each JOB function (project runtime), started on first use."""

    def __init__(
        self,
        start: Callable[[types_pb2.FunctionSpec], Awaitable[ForkServer]],
        track: Callable[[Awaitable[None]], None],
        idle_s: float = IDLE_S,
    ) -> None:
        self._start = start
        self._track = track
        self._idle_s = idle_s
        self._by_function: dict[str, _Entry] = {}
        self._refused: dict[str, tuple[int, float]] = {}

    async def fork(
        self, spec: types_pb2.FunctionSpec, env: dict[str, str]
    ) -> tuple[ForkedChild, float] | None:
        """A fresh child for one attempt and the seconds spent starting its server (0 when it ran).

        None: use a spawned process instead (the server cannot start or refuses).
        """
        refused = self._refused.get(spec.name)
        if refused is not None and refused[0] == spec.revision and time.monotonic() < refused[1]:
            return None
        entry = self._by_function.get(spec.name)
        if entry is not None and entry.revision != spec.revision:
            self.drop(spec.name)
            entry = None
        if entry is not None and entry.task.done() and not _running(entry.task):
            # The server died since the last attempt: say so, and start another one now.
            log.warning(
                "fork server exited, restarting it",
                extra={"functionName": spec.name, "exit": _exit_of(entry.task)},
            )
            self.drop(spec.name)
            entry = None
        started = time.perf_counter()
        if entry is None:
            entry = _Entry(spec.revision, asyncio.ensure_future(self._start(spec)))
            self._by_function[spec.name] = entry
            self._arm_idle(spec.name, entry)
        cold = not entry.task.done()
        entry.last_used = time.monotonic()
        try:
            server = await asyncio.shield(entry.task)
        except (StartError, ForkRefused, OSError) as exc:
            self._refuse(spec, entry, exc)  # it could not start
            return None
        try:
            child = await server.fork(env)
        except ForkRefused as exc:
            self._refuse(spec, entry, exc)
            return None
        except (StartError, OSError) as exc:
            # It died since it started: this attempt gets a process, the next one a new server.
            log.warning("fork server exited", extra={"functionName": spec.name, "error": str(exc)})
            self._forget(spec.name, entry)
            return None
        return child, (time.perf_counter() - started if cold else 0.0)

    def _refuse(self, spec: types_pb2.FunctionSpec, entry: _Entry, exc: Exception) -> None:
        log.warning(
            "fork server unavailable, starting a process per attempt",
            extra={"functionName": spec.name, "error": str(exc)},
        )
        self._refused[spec.name] = (spec.revision, time.monotonic() + _REFUSED_S)
        self._forget(spec.name, entry)

    def _forget(self, name: str, entry: _Entry) -> None:
        if self._by_function.get(name) is entry:
            self.drop(name)

    def _arm_idle(self, name: str, entry: _Entry) -> None:
        delay = max(entry.last_used + self._idle_s - time.monotonic(), 0.01)
        asyncio.get_running_loop().call_later(delay, self._expire, name, entry)

    def _expire(self, name: str, entry: _Entry) -> None:
        if self._by_function.get(name) is not entry:
            return
        busy = entry.task.done() and _running(entry.task) and entry.task.result().busy > 0
        if busy or time.monotonic() - entry.last_used < self._idle_s:
            self._arm_idle(name, entry)
            return
        self.drop(name)

    def drop(self, name: str) -> None:
        """The function changed, went away or idled: its server stops once its running children end."""
        entry = self._by_function.pop(name, None)
        if entry is not None:
            self._track(_retire(entry.task))

    async def close(self) -> None:
        entries, self._by_function = list(self._by_function.values()), {}
        for entry in entries:
            entry.task.cancel()
        await asyncio.gather(*(_stop(entry.task, grace=1.0) for entry in entries), return_exceptions=True)


def _running(task: asyncio.Task[ForkServer]) -> bool:
    return not task.cancelled() and task.exception() is None and task.result().alive()


def _exit_of(task: asyncio.Task[ForkServer]) -> str:
    if task.cancelled() or task.exception() is not None:
        return "never started"
    code = task.result().process.returncode
    return describe_exit(code) if code is not None else "control channel closed"


async def _retire(task: asyncio.Task[ForkServer]) -> None:
    """Running attempts keep their children: the server stops when the last one has exited."""
    try:
        server = await task
    except BaseException:
        return
    await server.drained()
    await server.stop(grace=1.0)


async def _stop(task: asyncio.Task[ForkServer], grace: float) -> None:
    try:
        server = await task
    except BaseException:
        return
    await server.stop(grace=grace)
