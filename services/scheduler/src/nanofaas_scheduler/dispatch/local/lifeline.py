"""Function processes die with the scheduler, however it ends (even SIGKILL).

Two mechanisms, by who the process is:

* The project's runtime and watchdog get the read end of a pipe whose write end
  only the scheduler holds (NANOFAAS_LIFELINE_FD; both ends are close-on-exec here,
  and only the read end is passed on). When the scheduler is gone the kernel closes
  the write end; the server reads end-of-file, kills every process it started
  (its children included, even after a setsid()) and exits.
* A user's own server knows nothing of that pipe: it gets the parent-death signal
  (prctl PR_SET_PDEATHSIG, SIGKILL) in a pre-exec step. That signal follows the
  *thread* that forked the child, not the process: it is right here only because
  servers are always spawned from the event loop's thread, which lives as long as
  the scheduler (never spawn them from an executor thread). A pre-exec step also
  makes the spawn a fork instead of a vfork, which is why the project's own
  servers, which are spawned most, take the pipe instead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

LIFELINE_FD_ENV = "NANOFAAS_LIFELINE_FD"
_PR_SET_PDEATHSIG = 1


class Lifeline:
    """The pipe; made on first use, closed (both ends) when the backend closes."""

    def __init__(self) -> None:
        self._read: int | None = None
        self._write: int | None = None
        self.preexec = parent_death_kill()

    def read_fd(self) -> int:
        if self._read is None:
            self._read, self._write = os.pipe()  # non-inheritable: only pass_fds hands it on
        return self._read

    def close(self) -> None:
        for fd in (self._read, self._write):
            if fd is not None:
                os.close(fd)
        self._read = self._write = None


def parent_death_kill() -> Callable[[], None] | None:
    """A pre-exec step giving the child SIGKILL when its parent thread ends; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the scheduler died before the signal was armed
            os._exit(1)

    return arm
