"""Summarise py-spy collapsed stacks (`--profile`): where a process' busy samples go.

`python -m bench.profile_summary profile-scheduler.txt [--top 25]` prints the busy share
(samples whose leaf is not a wait in epoll/poll/futex), the top frames by self and by
cumulative samples, and the busy samples by the library that runs them (the innermost
Python frame's file, so a native leaf such as `write` counts for the code that called it).
Shares are of busy samples: comparable between runs even when absolute rates are not.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Leaf frames that mean "this thread waits": dropped from the busy samples.
_IDLE = re.compile(
    r"^(epoll_wait|epoll_pwait|poll|ppoll|select|pselect6?|futex|__futex\w*|pthread_cond_\w*|sem_wait"
    r"|sem_timedwait|do_futex_wait\w*|nanosleep|clock_nanosleep|accept4?|0x[0-9a-f]+) "
)
# Threads that block in a plain read (the runtime's lifeline pipe): waiting, not work.
_IDLE_THREADS = ("_watch (nanofaas_runtime/lifeline.py",)
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<where>[^()]*)\)$")
# Library by a path fragment of the innermost Python frame; first match wins.
_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("grpc/", "grpc"),
    ("google/protobuf", "protobuf"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("uvicorn/", "uvicorn"),
    ("httptools", "uvicorn"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("pydantic", "starlette/fastapi"),
    ("prometheus_client", "prometheus"),
    ("opentelemetry", "opentelemetry"),
    ("uvloop", "asyncio/uvloop"),
    ("asyncio/", "asyncio/uvloop"),
    ("nanofaas_gateway", "nanofaas (own code)"),
    ("nanofaas_scheduler", "nanofaas (own code)"),
    ("nanofaas_runtime", "nanofaas (own code)"),
    ("nanofaas/v1", "nanofaas (own code)"),
    ("orjson", "orjson"),
    ("logging/", "logging"),
    ("threading.py", "threads"),
    ("concurrent/futures", "threads"),
)


@dataclass
class Summary:
    total: int = 0
    busy: int = 0
    self_samples: Counter[str] = field(default_factory=Counter)
    cumulative: Counter[str] = field(default_factory=Counter)
    python_self: Counter[str] = field(default_factory=Counter)
    libraries: Counter[str] = field(default_factory=Counter)


def _stacks(lines: Iterable[str]) -> Iterator[tuple[list[str], int]]:
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def _key(frame: str) -> str:
    """A frame without its line number: `name (file)`, so one function is one row."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    where = match["where"].rsplit(":", 1)[0] if ".py:" in match["where"] else match["where"]
    return f"{match['name']} ({where})"


def _python_leaf(frames: list[str]) -> str:
    """The innermost Python frame, with the native leaf it was in (`write <- _read (grpc/...)`)."""
    for frame in reversed(frames):
        if ".py:" in frame or ".pyx:" in frame:
            leaf = frames[-1]
            native = "" if leaf is frame else f"{leaf.split(' (')[0]} <- "
            return native + _key(frame)
    return _key(frames[-1])


def _library(frames: list[str]) -> str:
    if frames and frames[-1].startswith(("gc_collect", "_PyObject_GC", "collect (")):
        return "gc"
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        where = match["where"] if match else ""
        if ".py" not in where and ".so" not in where and ".pyx" not in where:
            continue
        if "libpython" in where or "libc.so" in where:
            continue
        for fragment, name in _LIBRARIES:
            if fragment in where:
                return name
        if ".py" in where:
            return "other python"
    return "interpreter/native"


def summarise(path: Path) -> Summary:
    summary = Summary()
    for frames, count in _stacks(path.read_text().splitlines()):
        summary.total += count
        if not frames or _IDLE.match(frames[-1] + " "):
            continue
        if any(marker in frame for frame in frames for marker in _IDLE_THREADS):
            continue
        summary.busy += count
        summary.self_samples[_key(frames[-1])] += count
        for key in {_key(frame) for frame in frames}:
            summary.cumulative[key] += count
        summary.libraries[_library(frames)] += count
        summary.python_self[_python_leaf(frames)] += count
    return summary


def _python_only(counter: Counter[str]) -> Counter[str]:
    """Cumulative counts of Python functions only; the interpreter's and the loop's C frames
    (uv_run, task_step, ...) are on every stack and say nothing."""
    return Counter({key: n for key, n in counter.items() if re.search(r"\.pyx?\)$", key)})


def render(path: Path, top: int) -> str:
    summary = summarise(path)
    busy = max(summary.busy, 1)
    share = 100 * summary.busy / max(summary.total, 1)
    lines = [f"{path.name}: {summary.total} samples, {summary.busy} busy ({share:.0f} %)"]
    for title, counter in (
        ("busy samples by library (innermost Python frame)", summary.libraries),
        ("top frames by self samples", summary.self_samples),
        ("self samples by innermost Python frame (native leaf <- its caller)", summary.python_self),
        ("top Python frames by cumulative samples", _python_only(summary.cumulative)),
    ):
        lines.append(f"\n{title}:")
        lines.extend(f"{100 * n / busy:6.1f} %  {name}" for name, n in counter.most_common(top))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n\n".join(render(path, args.top) for path in args.profiles))


if __name__ == "__main__":
    main()
