"""Linux namespace primitives: enter a network namespace, make sockets that live in one.

A socket belongs to the network namespace of the thread that created it, for its whole life,
whichever thread later uses it. So a throwaway thread that enters a namespace and creates the
socket there is all it takes for the cluster's event loop (which never leaves the host's
namespace) to listen in, or connect from, the pod network. Python 3.11 has no ``os.setns``:
the libc calls go through ctypes. Linux only; needs CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def setns(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace at ``path`` (e.g. /run/netns/NAME)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {source} on {target}",
    )


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread inside the network namespace ``path``; its result or error."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            setns(path)
            result.append(fn())
        except BaseException as error:  # handed to the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run, name=f"netns {path}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def socket_in(path: str) -> socket.socket:
    """A non-blocking TCP socket of the network namespace ``path``."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    return in_netns(path, make)


def listener_in(path: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to ``host:port`` inside the network namespace ``path``."""
    sock = socket_in(path)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
