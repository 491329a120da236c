"""Hand back, once start-up is over, the memory that only start-up touched.

Measured in docs/performance.md ("Round three, perf-rss"): after start-up about
half of each service's RSS is clean pages of shared libraries and their files
(grpc's cygrpc alone ~10 MiB, libpython, libcrypto, pydantic-core) that the
dynamic loader, static initializers and imports faulted in and the idle service
never reads again. Dropping this process's mappings of them (`MADV_DONTNEED`)
leaves the pages in the page cache, exactly as the kernel's own reclaim would:
the code the service then runs faults back in from there (a minor fault, no
I/O), so RSS becomes the working set. Only private, non-writable mappings of a
file with no anonymous (copied-on-write) page are advised: for those the file
is the content, so nothing can change. Python never unloads a library, so a
range read from smaps cannot be reused by another mapping before it is advised.

`malloc_trim(0)` then returns malloc's free pages (import-time garbage) to the
kernel. Both are Linux/glibc calls; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterable
from dataclasses import dataclass

SMAPS = "/proc/self/smaps"
_CLEAN_PERMS = ("r--p", "r-xp")


@dataclass(frozen=True)
class Released:
    """What release_startup_memory did: how many mappings it advised, and whether malloc trimmed."""

    mappings: int
    trimmed: bool


def clean_file_ranges(smaps: Iterable[str]) -> list[tuple[int, int]]:
    """The [start, end) ranges of smaps' private, non-writable file mappings without anonymous pages.

    A mapping counts only once its `Anonymous: 0` line is read, so a cut-short smaps never adds
    one unseen. `smaps` is read line by line: holding the file whole grew pymalloc's arenas.
    """
    ranges: list[tuple[int, int]] = []
    candidate: tuple[int, int] | None = None
    for line in smaps:
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            candidate = None
            # One path and nothing after it ("(deleted)" marks a file that is gone),
            # mapped readable, not writable, private.
            if len(fields) == 6 and fields[5].startswith("/") and fields[1] in _CLEAN_PERMS:
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                candidate = (start, end)
        elif fields[0] == "Anonymous:" and candidate is not None:
            if fields[1:2] == ["0"]:
                ranges.append(candidate)
            candidate = None
    return ranges


def release_startup_memory() -> Released:
    """Drop this process's clean file pages and malloc's free pages (see the module docstring)."""
    try:
        with open(SMAPS, encoding="utf-8") as handle:
            ranges = clean_file_ranges(handle)
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux, or no /proc: nothing to hand back this way
        return Released(mappings=0, trimmed=False)
    advised = 0
    madvise = getattr(libc, "madvise", None)
    if madvise is not None:
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        madvise.restype = ctypes.c_int
        for start, end in ranges:
            # A refusal (e.g. a locked mapping) leaves that mapping as it was.
            if madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
                advised += 1
    malloc_trim = getattr(libc, "malloc_trim", None)  # glibc only (not musl)
    trimmed = False
    if malloc_trim is not None:
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim.restype = ctypes.c_int
        trimmed = bool(malloc_trim(0))
    return Released(mappings=advised, trimmed=trimmed)
