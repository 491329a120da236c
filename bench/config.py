"""What a bench run measures and for how long: defaults, quick mode and overrides."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
HANDLERS_DIR = BENCH_DIR / "handlers"


@dataclass(frozen=True)
class BenchConfig:
    duration_s: int = 10
    repeats: int = 3
    connections: tuple[int, ...] = (1, 8, 32, 128)
    warm_concurrency: int = 8
    job_invocations: int = 40
    job_concurrency: int = 4
    async_connections: int = 32
    dispatch_sizes: tuple[int, ...] = (1, 100, 10_000)
    dispatch_hot: int = 100
    dispatch_connections: int = 32
    memory_executions: int = 100_000
    scenarios: tuple[str, ...] = ("ceiling", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
    profile: bool = False
    quick: bool = False
    out_dir: Path = field(default_factory=lambda: BENCH_DIR / "results")


QUICK = {
    "duration_s": 2,
    "repeats": 2,
    "connections": (1, 32),
    "job_invocations": 8,
    "dispatch_sizes": (1, 100, 1_000),
    "memory_executions": 5_000,
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    """CLI flags win over BENCH_* environment variables, which win over the defaults."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the nanofaas benchmarks.")
    parser.add_argument("--quick", action="store_true", default=_truthy("BENCH_QUICK"), help="~3 min run")
    parser.add_argument("--duration", type=int, default=os.environ.get("BENCH_DURATION"), help="s per run")
    parser.add_argument("--repeats", type=int, default=os.environ.get("BENCH_REPEATS"))
    parser.add_argument("--connections", default=os.environ.get("BENCH_CONNECTIONS"), help="e.g. 1,8,32")
    parser.add_argument("--memory-executions", type=int, default=os.environ.get("BENCH_MEMORY_EXECUTIONS"))
    parser.add_argument(
        "--scenarios", default=os.environ.get("BENCH_SCENARIOS"), help="subset of ceiling,a,b,c,d,e,f,g,h,i,j"
    )
    parser.add_argument("--profile", action="store_true", default=_truthy("BENCH_PROFILE"), help="py-spy")
    parser.add_argument("--out", type=Path, default=os.environ.get("BENCH_OUT"), help="results directory")
    args = parser.parse_args(argv)
    values: dict[str, object] = dict(QUICK) if args.quick else {}
    values["quick"] = args.quick
    values["profile"] = args.profile
    if args.duration is not None:
        values["duration_s"] = int(args.duration)
    if args.repeats is not None:
        values["repeats"] = int(args.repeats)
    if args.connections:
        values["connections"] = _ints(args.connections)
    if args.memory_executions is not None:
        values["memory_executions"] = int(args.memory_executions)
    if args.scenarios:
        values["scenarios"] = tuple(part.strip() for part in args.scenarios.split(",") if part.strip())
    if args.out is not None:
        values["out_dir"] = Path(args.out)
    return BenchConfig(**values)  # type: ignore[arg-type]
