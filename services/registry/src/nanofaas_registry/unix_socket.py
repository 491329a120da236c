"""The listener's Unix socket file: claimed before grpc binds it, removed after the server stops.

grpc binds `unix:` addresses itself; what it leaves to us is the file. A file left by a
server that died is removed; one another live server answers on, or a file that is not a
socket at all, stops the start with a clear line instead of being deleted. The socket is
made 0660 (owner and group: the containers of one pod share a group, see deploy/), and
only the file this process made is removed at stop, never a successor's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

SOCKET_MODE = 0o660
# How long the probe for a live server may wait: a listening server accepts at once.
_PROBE_TIMEOUT_S = 1.0


class SocketPathError(OSError):
    """The socket path cannot be listened on (taken, not a socket, no directory); str() says why."""


def claim(path: str) -> None:
    """Make `path` free for a new socket: remove a stale socket file, refuse anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_PROBE_TIMEOUT_S)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # nobody listens: left by a server that died
            return
        except OSError as exc:
            raise SocketPathError(f"{path}: cannot tell whether a server listens on it ({exc})") from None
    raise SocketPathError(f"{path}: another server is listening on it")


def secure(path: str) -> int:
    """Give the socket just bound at `path` its mode; returns its inode, for release()."""
    os.chmod(path, SOCKET_MODE)
    return os.lstat(path).st_ino


def release(path: str, inode: int) -> None:
    """Remove the socket file at `path` if it is still the one this server made."""
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
