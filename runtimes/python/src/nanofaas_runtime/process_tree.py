"""Every process a function started, found by parentage, so none escapes a kill by leaving its group.

A process group kill misses whatever called setsid() (or setpgid()): a handler's
`subprocess.Popen(..., start_new_session=True)`, a daemonising helper. Parentage
cannot be left that way, so the tree is read from /proc: the descendants of a
root by parent pid, plus the members of its process group. While the tree is
collected every process found is stopped (SIGSTOP), so nothing forks behind our
back; then all of them get SIGKILL. With the runtime a child subreaper
(lifeline.py), an orphaned grandchild is re-parented to the runtime rather than to
init, so it stays in the tree.

Linux only (/proc); elsewhere the tree is empty and callers fall back to the group.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

_PROC = Path("/proc")
# Each round stops what the previous ones found; a tree that still grows after this many is
# a fork bomb, and what was found is killed anyway.
_MAX_ROUNDS = 50


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (non-zombie) process we can read."""
    table: dict[int, tuple[int, int]] = {}
    try:
        entries = list(os.scandir(_PROC))
    except OSError:
        return table
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (_PROC / entry.name / "stat").read_bytes()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 3 or fields[0] in (b"Z", b"X"):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def children(parent: int) -> set[int]:
    """The direct children of `parent`, zombies included (from /proc/<pid>/task/*/children)."""
    task_dir = _PROC / str(parent) / "task"
    try:
        tasks = os.listdir(task_dir)
    except OSError:
        return set()
    found: set[int] = set()
    for tid in tasks:
        try:
            found.update(int(pid) for pid in (task_dir / tid / "children").read_text().split())
        except FileNotFoundError:
            if (task_dir / tid).exists():  # the kernel has no such file: scan instead
                return {pid for pid, (ppid, _) in _processes().items() if ppid == parent}
        except OSError:
            continue  # the thread exited meanwhile
    return found


def descendants(root: int) -> set[int]:
    """The live processes below `root` by parentage, plus its group's members (root excluded)."""
    table = _processes()
    below: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        below.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    pending = [root, *(pid for pid, (_, pgid) in table.items() if pgid == root)]
    while pending:
        pid = pending.pop()
        if pid != root:
            if pid in found:
                continue
            found.add(pid)
        pending.extend(below.get(pid, ()))
    found.discard(root)
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_tree(root: int, *, include_root: bool) -> set[int]:
    """SIGKILL everything below `root` (and `root` itself if asked); returns the pids killed.

    Freezes the tree first so a process cannot fork a new one between the look and the kill.
    """
    frozen: set[int] = set()
    for _ in range(_MAX_ROUNDS):
        found = descendants(root) - frozen
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        frozen |= found
    if include_root:
        _signal(root, signal.SIGKILL)
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    return frozen
