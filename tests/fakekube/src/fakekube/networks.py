"""Pod networks that no two fake clusters on one machine share, even in different processes.

Pods get loopback addresses ``127.<network>.<node>.<n>``; without network namespaces two clusters
on the same network would give two pods the same address, and a probe or request meant for one
would reach the other (a real cluster never hands out an address another pod holds). Each
cluster holds an exclusive ``flock`` on its network's lock file for its lifetime; the kernel
drops it when the process dies, so a crashed test run frees its network.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

_FIRST, _LAST = 16, 250


class NetworkClaim:
    """One claimed ``127.<n>`` network, released by `release` (or when the process ends)."""

    def __init__(self) -> None:
        folder = Path(tempfile.gettempdir()) / "fakekube-pod-networks"
        folder.mkdir(mode=0o777, exist_ok=True)
        candidates = list(range(_FIRST, _LAST + 1))
        random.shuffle(candidates)
        for number in candidates:
            fd = os.open(folder / f"127.{number}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.prefix = f"127.{number}"
            self._fd: int | None = fd
            return
        raise RuntimeError(f"every fake pod network (127.{_FIRST}-{_LAST}) is held by another cluster")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
