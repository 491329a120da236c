"""The runtime and the watchdog never outlive whoever started them, nor let their children do so.

Three mechanisms, installed once at start (`install`):

* The lifeline: the scheduler hands over the read end of a pipe whose write end
  only it holds (NANOFAAS_LIFELINE_FD). However the scheduler ends, even by
  SIGKILL, the kernel closes the write end, the read returns end-of-file, and this
  process kills everything it started and exits. A pipe, not PR_SET_PDEATHSIG: the
  parent-death signal fires when the *thread* that forked us exits (an executor
  thread in an asyncio program), and it would kill us before we could kill our
  own descendants. If the scheduler died before we got here, the read ends at once.
* Child subreaper (PR_SET_CHILD_SUBREAPER): a handler's grandchild whose parent
  exits is re-parented to us, not to init, so process_tree still finds it, even
  after a setsid().
* At a normal exit (SIGTERM, single use), the same tree kill runs from atexit.

Orphans that exit on their own stay zombies until this process exits; that costs a
pid each and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import sys
import threading

from nanofaas_runtime.process_tree import kill_tree

LIFELINE_FD_ENV = "NANOFAAS_LIFELINE_FD"
# The exit status when the parent went away (the platform is gone; nobody reads it).
EXIT_PARENT_GONE = 0
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants get re-parented to this process; False where Linux's prctl is missing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def kill_descendants() -> None:
    """Kill every process this one started, directly or not (itself excluded)."""
    kill_tree(os.getpid(), include_root=False)


def _lifeline_fd() -> int | None:
    raw = os.environ.get(LIFELINE_FD_ENV, "").strip()
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        os.set_inheritable(fd, False)  # a handler's own children have no business with it
    except OSError:
        return None
    return fd


def _watch(fd: int) -> None:
    """Block until the parent's end closes, then take everything down with us."""
    with contextlib.suppress(OSError):
        while os.read(fd, 512):
            pass
    kill_descendants()
    os._exit(EXIT_PARENT_GONE)


def install() -> None:
    """Subreaper, the exit-time tree kill and, when handed one, the lifeline watcher thread."""
    become_subreaper()
    atexit.register(kill_descendants)
    fd = _lifeline_fd()
    if fd is not None:
        threading.Thread(target=_watch, args=(fd,), name="nanofaas-lifeline", daemon=True).start()
