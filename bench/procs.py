"""Child processes the bench starts, and what /proc says about any process (CPU ticks, RSS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A process we started, with its log file; `stop` ends its whole process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 30.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(self.pid)
            return self.process.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Child:
    """Start `argv` in its own session (so a Ctrl-C to the bench reaches only the bench)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(name, process, log)


def wait_http(url: str, children: Sequence[Child], timeout_s: float = 60.0, method: str = "GET") -> None:
    """Poll `url` until it answers below 500: a process we do not control offers no event to await."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                tail = child.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{tail}")
        request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {timeout_s} s")


def wait_port(port: int, children: Sequence[Child], timeout_s: float = 30.0) -> None:
    """Poll until 127.0.0.1:`port` accepts a connection (a process we do not control)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening within {timeout_s} s")


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rpartition(")")[2].split()[19])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (function replicas, gunicorn workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


ProcessGroups = Mapping[str, Sequence[int]]


def snapshot(groups: ProcessGroups) -> dict[str, dict[int, int]]:
    result: dict[str, dict[int, int]] = {}
    for name, pids in groups.items():
        ticks = {pid: cpu_ticks(pid) for pid in pids}
        result[name] = {pid: value for pid, value in ticks.items() if value is not None}
    return result


def cpu_seconds_between(
    before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]
) -> dict[str, float]:
    """CPU seconds each group spent; a process new since `before` counts from zero."""
    spent: dict[str, float] = {}
    for name, now in after.items():
        start = before.get(name, {})
        ticks = sum(value - start.get(pid, 0) for pid, value in now.items())
        spent[name] = ticks / CLK_TCK
    return spent
