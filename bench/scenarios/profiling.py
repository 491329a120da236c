"""py-spy around one extra load run (`--profile`): what scenarios a, e and f record.

Collapsed stacks, one file per process, for `python -m bench.profile_summary`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.platform import Platform
from bench.scenarios import Context, log


def pool_targets(platform: Platform) -> dict[str, int]:
    """The gateway, the scheduler and one warm replica.

    One replica of the pool stands for all of them (they share the load); profiling every
    replica would put a profiler per replica on the same cores.
    """
    targets = {name: platform.children[name].pid for name in ("gateway", "scheduler")}
    replicas = platform.pids()["functions"]
    if replicas:
        targets["runtime"] = min(replicas)
    return targets


@contextmanager
def profiling(ctx: Context, label: str, targets: dict[str, int], duration_s: int) -> Iterator[None]:
    """py-spy each target pid for `duration_s` while the block runs the load (start it at once):
    `profile-<label>-<name>.txt`, or `profile-<name>.txt` for an empty label."""
    spy = str(Path(sys.executable).parent / "py-spy")
    record = [spy, "record", "--format", "raw", "--rate", "200", "--native", "-d", str(duration_s)]
    names = {name: f"profile-{label}-{name}.txt" if label else f"profile-{name}.txt" for name in targets}
    procs = [
        subprocess.Popen(
            [*record, "-p", str(pid), "-o", str(ctx.out_dir / names[name])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    ]
    try:
        yield
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=duration_s + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    log(f"profiles written to {', '.join(names.values())}")
