"""JOB mode in milliseconds: a pre-imported parent (the fork server) forks a fresh child per invocation.

`python -m nanofaas_runtime --mode fork-server`, started by the platform's local
backend. The parent imports the runtime and the user's handler module once, then
waits for requests on a control socket (a SOCK_SEQPACKET end inherited in
NANOFAAS_FORK_CONTROL_FD): each request carries a listening socket (SCM_RIGHTS)
and the invocation's variables; the parent forks, the child serves exactly that one
invocation over the function HTTP protocol on that socket and exits. A child is
never reused and is forked from the parent, which runs no invocation itself, so
what one invocation changes in its process (a module global, the RNG, a file it
opened) is never seen by another: a child shares with its siblings only what the
handler's import built.

Kept safe, in order (docs/runtime.md "JOB mode through a fork server"):

* No threads in the parent, ever: no lifeline thread (the parent polls the pipe
  itself), no tracing provider (each child sets up its own), and before start-up
  completes and before every fork the parent checks that it is the only thread
  (`threading.active_count()` and /proc/self/task). A handler module that starts a
  thread at import makes the parent refuse (`unsafe`): the platform then starts a
  process per invocation instead.
* In the child: a new session and process group (the platform's tree kill covers
  it), SIGKILL when the parent dies (PR_SET_PDEATHSIG: the parent's one thread
  forked it), the parent's own descriptors closed (control socket, lifeline, signal
  wake-up pipe), signal handlers and mask back to a fresh interpreter's, the RNG
  re-seeded (`random.seed()`, beside the at-fork hooks `os.fork` runs), the
  invocation's EXECUTION_ID / NANOFAAS_ATTEMPT / TRACE_ID / TRACEPARENT set as for
  a process started for it, and a child subreaper so what the handler starts stays
  in the child's tree.
* The parent is a subreaper too: whatever a dead child left behind is re-parented to
  it and killed; it reports each child's exit (a signal is how the platform tells a
  crash) and kills a child's tree when asked (it alone knows the pid is still its
  unreaped child, so a kill never hits a reused pid). At the lifeline's end of file,
  on SIGTERM or when the control socket closes it kills every child and exits.

Messages are one JSON object per datagram. Parent -> platform: `{"ready": pid}` or
`{"unsafe": reason}` once; `{"id", "pid"}` or `{"id", "error"}` per fork;
`{"exited": pid, "code": n}` (n < 0: killed by signal -n). Platform -> parent:
`{"fork": id, "env": {...}}` with one descriptor, `{"kill": pid}`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import os
import random
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from nanofaas_runtime import capture, logs
from nanofaas_runtime.handler import Handler, fail_start, load_handler_or_exit
from nanofaas_runtime.lifeline import LIFELINE_FD_ENV, become_subreaper, kill_descendants
from nanofaas_runtime.process_tree import children, kill_tree

CONTROL_FD_ENV = "NANOFAAS_FORK_CONTROL_FD"
INVOCATION_VARIABLES = ("EXECUTION_ID", "NANOFAAS_ATTEMPT", "TRACE_ID", "TRACEPARENT")
EXIT_BAD_CONFIG = 2
EXIT_UNSAFE = 5
EXIT_CHILD_FAILED = 70
_MAX_MESSAGE = 64 * 1024
_PR_SET_PDEATHSIG = 1
_RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)


def fork_hazard() -> str:
    """Why forking now would be unsafe ("" when it is not): any thread but this one."""
    python_threads = threading.active_count()
    if python_threads != 1:
        others = (t.name for t in threading.enumerate() if t is not threading.current_thread())
        names = ", ".join(sorted(others))
        return f"{python_threads - 1} other Python thread(s) running ({names})"
    try:
        os_threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return ""  # not Linux: the Python count is all there is
    if os_threads != 1:
        return f"{os_threads - 1} other native thread(s) running"
    return ""


def _preload() -> None:
    """Import what a child needs to serve, so no child pays for it."""
    import asyncio  # noqa: F401
    import concurrent.futures.thread  # noqa: F401

    import uvloop  # noqa: F401

    from nanofaas_runtime import one_request, server, tracing  # noqa: F401

    if tracing.tracing_enabled():
        # The SDK and the OTLP exporter (~150 ms of imports); the provider, whose batch
        # exporter is a thread, is made by each child.
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter
        import opentelemetry.sdk.resources
        import opentelemetry.sdk.trace.export  # noqa: F401

        from nanofaas_runtime import invocation_spans  # noqa: F401


def _die_with(parent: int) -> Callable[[], None]:
    """The child's PR_SET_PDEATHSIG step (prctl looked up before any fork); a no-op off Linux."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(EXIT_CHILD_FAILED)

    return arm


def _inherited_fd(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return None
    return fd


class ForkServer:
    """The parent: one poll loop over the control socket, the lifeline and SIGCHLD."""

    def __init__(self, handler: Handler, control: socket.socket, lifeline: int | None) -> None:
        self._handler = handler
        self._control = control
        self._lifeline = lifeline
        self._children: set[int] = set()
        self._stopping = False
        self._initial_signals = {sig: signal.getsignal(sig) for sig in _RESET_SIGNALS}
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._arm_pdeathsig = _die_with(os.getpid())

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._control.send(orjson.dumps(message))

    def serve(self) -> int:
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        poller = select.poll()
        poller.register(self._control.fileno(), select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        if self._lifeline is not None:
            poller.register(self._lifeline, select.POLLIN)
        self.send({"ready": os.getpid()})
        try:
            while not self._stopping:
                for fd, _ in poller.poll():
                    if fd == self._wake_read:
                        self._drain_wakeups()
                    elif fd == self._lifeline:
                        self._read_lifeline()
                    elif fd == self._control.fileno():
                        self._read_control()
        finally:
            kill_descendants()
            _reap_all()  # no child is left a zombie for whoever inherits it
        return 0

    def _stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _read_lifeline(self) -> None:
        assert self._lifeline is not None
        try:
            data = os.read(self._lifeline, 512)
        except OSError:
            data = b""
        if not data:
            self._stopping = True  # the platform is gone

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 512):
                pass
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self._children:
                self._children.discard(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # what is left of its group
                self.send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        # Orphans a dead child left behind were re-parented to us (subreaper): kill them.
        for orphan in children(os.getpid()) - self._children:
            kill_tree(orphan, include_root=True)

    def _read_control(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._control, _MAX_MESSAGE, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self._stopping = True  # the platform closed its end
            return
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = {}
        if not isinstance(message, dict):
            message = {}
        if "fork" in message and len(fds) == 1:
            self._fork(message, fds[0])
            return
        for fd in fds:
            os.close(fd)
        pid = message.get("kill")
        if isinstance(pid, int) and pid in self._children:
            kill_tree(pid, include_root=True)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def _fork(self, message: dict[str, Any], listen_fd: int) -> None:
        request_id = message["fork"]
        env = message.get("env")
        hazard = fork_hazard()
        if hazard or not isinstance(env, dict):
            os.close(listen_fd)
            self.send({"id": request_id, "error": hazard or "bad fork request"})
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing buffered here may be written twice
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(listen_fd)
            self.send({"id": request_id, "error": f"fork failed: {exc.strerror or exc}"})
            return
        if pid == 0:
            self._child(listen_fd, {str(k): str(v) for k, v in env.items()})
        os.close(listen_fd)
        self._children.add(pid)
        self.send({"id": request_id, "pid": pid})

    def _child(self, listen_fd: int, env: dict[str, str]) -> NoReturn:
        code = EXIT_CHILD_FAILED
        try:
            os.setsid()
            self._arm_pdeathsig()
            self._close_parent_descriptors()
            for sig, handler in self._initial_signals.items():
                signal.signal(sig, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            random.seed()
            _set_invocation_environment(env)
            become_subreaper()
            code = _serve_invocation(self._handler, listen_fd)
        except BaseException as exc:  # whatever happens, the parent's code below must never run
            with contextlib.suppress(BaseException):
                sys.stderr.write(f"nanofaas-runtime: forked child failed: {exc!r}\n")
        finally:
            _exit_child(code)

    def _close_parent_descriptors(self) -> None:
        signal.set_wakeup_fd(-1)
        self._control.close()
        for fd in (self._wake_read, self._wake_write, self._lifeline):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _reap_all() -> None:
    """Wait for every child (all were just killed, so this is quick)."""
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)


def _set_invocation_environment(env: dict[str, str]) -> None:
    """The child's environment is that of a process started for its invocation."""
    for name in INVOCATION_VARIABLES:
        if name in env:
            os.environ[name] = env[name]
        else:
            os.environ.pop(name, None)
    for name in (CONTROL_FD_ENV, LIFELINE_FD_ENV):
        os.environ.pop(name, None)
    os.environ["NANOFAAS_RUNTIME_MODE"] = "http"


def _serve_invocation(handler: Handler, listen_fd: int) -> int:
    import asyncio

    import uvloop

    from nanofaas_runtime import one_request, tracing
    from nanofaas_runtime.server import RuntimeApp

    tracing.setup_tracing()
    app = RuntimeApp(handler, 1, os.environ.get("FUNCTION_NAME", ""), tracing.active_tracer_provider())
    listener = socket.socket(fileno=listen_fd)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(one_request.serve_one_invocation(app, listener))
    finally:
        listener.close()
        tracing.shutdown_tracing()
    return 0


def _exit_child(code: int) -> NoReturn:
    """Exit hooks (the handler's, logging's), the tree kill, flushed streams; never the parent's code."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(BaseException):
        # A subreaper with no child has no descendant at all: skip the scan of /proc then.
        if children(os.getpid()):
            kill_descendants()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def run() -> int:
    """Load the handler (exit 3 as any mode when it cannot be), check it is safe to fork, serve."""
    logs.configure()
    handler = load_handler_or_exit()
    control_fd = _inherited_fd(CONTROL_FD_ENV)
    if control_fd is None:
        fail_start(f"{CONTROL_FD_ENV} must name an inherited socket", EXIT_BAD_CONFIG)
    control = socket.socket(fileno=control_fd)
    lifeline = _inherited_fd(LIFELINE_FD_ENV)
    _preload()
    server = ForkServer(handler, control, lifeline)
    hazard = fork_hazard()
    if hazard:
        server.send({"unsafe": hazard})
        return EXIT_UNSAFE
    become_subreaper()
    capture.install()
    # What the imports built is never collected here: the children's collections skip it too,
    # instead of touching (and so copying) every page of it.
    gc.freeze()
    return server.serve()
