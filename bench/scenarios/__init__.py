"""One module per scenario family; each `run(ctx)` returns a JSON-ready dict for the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.config import BenchConfig


@dataclass(frozen=True)
class Context:
    config: BenchConfig
    out_dir: Path

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "logs"


def log(message: str) -> None:
    """Progress for the person running the bench (stdout; the report is the result)."""
    print(f"[bench] {message}", flush=True)
