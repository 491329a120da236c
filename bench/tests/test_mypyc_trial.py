"""bench.mypyc_trial without compiling: its lists name real modules, and clean removes only products."""

from __future__ import annotations

import json
from pathlib import Path

from bench import mypyc_trial
from bench.mypyc_trial import MODULES, REJECTED, ROOT, clean, module_names, summarise


def test_every_listed_module_exists_and_none_is_both_compiled_and_rejected() -> None:
    listed = {f"{src}/{module}" for src, modules in MODULES.items() for module in modules}
    assert all((ROOT / path).is_file() for path in listed)
    assert all((ROOT / path).is_file() for path in REJECTED)
    assert not listed & set(REJECTED)
    assert "nanofaas_scheduler.core.scheduler" in module_names()
    gateway = [name for name in module_names() if name.startswith("nanofaas_gateway.")]
    assert module_names("gateway") == gateway


def test_summarise_prints_one_row_per_run_and_connection_count(tmp_path: Path) -> None:
    def spread(median: float) -> dict[str, float]:
        return {"min": median, "median": median, "max": median}

    groups = {"gateway": 300.0, "scheduler": 310.0, "functions": 250.0, "registry": 0.0, "total": 860.0}
    cell = {
        "connections": 32,
        "rps": spread(1672.2),
        "p50_ms": spread(18.3),
        "p99_ms": spread(40.04),
        "cpu_us_per_request": {group: spread(value) for group, value in groups.items()},
    }
    run = tmp_path / "before-1" / "20261201T170400Z"
    run.mkdir(parents=True)
    report = {"loadavg": {"start": [4.27, 5.7, 4.6]}, "scenarios": {"a": {"results": [cell]}}}
    (run / "report.json").write_text(json.dumps(report))

    header, row = summarise([tmp_path / "before-1"])

    assert header.startswith("run | load | conns")
    assert row == "before-1 | 4.3 | 32 | 1,672 | 18.30 | 40.04 | 300 | 310 | 250 | 860"


def test_clean_removes_extensions_group_library_and_build_folders_but_no_source(tmp_path: Path) -> None:
    src = tmp_path / "services/gateway/src"
    package = src / "nanofaas_gateway"
    package.mkdir(parents=True)
    (package / "fast_path.py").write_text("")
    (package / "fast_path.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (src / "1aca47b979a98ffee924__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (src / "build" / "lib").mkdir(parents=True)
    (src / "build" / "lib" / "1aca47b979a98ffee924__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (src / ".mypy_cache").mkdir()
    # Not under a listed source root: left alone.
    (tmp_path / "other.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")

    removed = clean(tmp_path)

    assert len(removed) == 4
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        [
            "services",
            "gateway",
            "src",
            "nanofaas_gateway",
            "fast_path.py",
            "other.cpython-311-x86_64-linux-gnu.so",
        ]
    )
    assert mypyc_trial.products(src) == []
