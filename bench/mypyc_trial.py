"""Compile the warm invoke path's hottest own modules with mypyc, in place, for a bench trial.

Issue 16 named mypyc as an idea to measure ("Round three, perf-mypyc" in docs/performance.md
has the result). This builds the modules of `MODULES` as C extensions next to their sources:
with the packages installed editable (the bench's `.venv-bench`), Python imports the `.so`
before the `.py` of the same name, so `make bench` then runs the compiled code. Nothing is
installed and no source changes; `clean` removes every product again (they are not
git-ignored, on purpose: a compiled tree must not go unnoticed).

    .venv/bin/python bench/mypyc_trial.py build     # needs mypy (mypyc) in that venv, and gcc
    .venv/bin/python bench/mypyc_trial.py verify --python .venv-bench/bin/python
    flock /tmp/nanofaas-bench.lock .venv-bench/bin/python -m bench --scenarios a ... --out DIR
    .venv/bin/python bench/mypyc_trial.py clean
    python bench/mypyc_trial.py summarise DIR...    # one row per run and connection count

The building interpreter must be the same CPython version as the bench's (the extensions are
built for it). `REJECTED` lists the hot modules left interpreted: mypyc would not compile them,
or they broke once compiled. Two compiled modules still misbehave off the benchmarked path
(`dispatch/http_invoke`, `dispatch/local/backend`: see the docs section).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Source root of each package -> its modules to compile (paths relative to that root), the own
# code on the warm path by the py-spy profile of "The profile after round two".
MODULES: dict[str, tuple[str, ...]] = {
    "services/gateway/src": tuple(
        f"nanofaas_gateway/{name}.py"
        for name in (
            "app",
            "body_limit",
            "convert",
            "fast_path",
            "invocation_body",
            "metrics",
            "responses",
            "route_templates",
            "routes/invocations",
        )
    ),
    "services/scheduler/src": tuple(
        f"nanofaas_scheduler/{name}.py"
        for name in (
            "core/completion_tokens",
            "core/execution",
            "core/execution_names",
            "core/lane",
            "core/outcome",
            "core/reports",
            "core/scheduler",
            "core/store",
            "dispatch/function_protocol",
            "dispatch/hop_client",
            "dispatch/http_invoke",
            "dispatch/local/backend",
            "dispatch/local/warm_pool",
            "dispatch/out_of_band",
            "dispatch/router",
            "observability/metrics",
            "policies/autoscale",
            "policies/wait_estimate",
            "request_limits",
        )
    ),
    "runtimes/python/src": tuple(
        f"nanofaas_runtime/{name}.py"
        for name in ("capture", "handler", "outcome", "protocol", "server", "workers")
    ),
}

# Hot modules left interpreted, with what mypyc (mypy 2.4.1) or the compiled code said.
REJECTED: dict[str, str] = {
    "services/gateway/src/nanofaas_gateway/scheduler_stream.py": (
        "async generators are unimplemented (the Stream's request iterator)"
    ),
    "services/scheduler/src/nanofaas_scheduler/grpc_service.py": (
        "async generators are unimplemented (four: Stream, Callbacks, GetLogs and the session's responses)"
    ),
    "services/gateway/src/nanofaas_gateway/connection_limits.py": (
        "compiles, but at run time makes its uvicorn protocol class per set of limits with type(): "
        "'interpreted classes cannot inherit from compiled'"
    ),
    "services/gateway/src/nanofaas_gateway/http_cycle.py": (
        "compiles, but re-classing uvicorn's cycle (cycle.__class__ = GatewayCycle) fails: "
        "'object layout differs'"
    ),
    "runtimes/python/src/nanofaas_runtime/asgi.py": (
        "nested class definitions not supported (the uvicorn.Server subclass in _server)"
    ),
}


def products(src: Path) -> list[Path]:
    """Everything a build leaves under one source root: extensions, mypyc's group library,
    its build folder and the mypy cache it writes there."""
    folders = [path for path in (src / "build", src / ".mypy_cache") if path.exists()]
    found = [
        path
        for path in src.rglob("*.so")
        if (".cpython-" in path.name or "__mypyc" in path.name)
        and not any(folder in path.parents for folder in folders)
    ]
    return sorted(found + folders)


def clean(root: Path = ROOT) -> list[Path]:
    removed: list[Path] = []
    for src in MODULES:
        for path in products(root / src):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def build(python: str, only: str | None = None, root: Path = ROOT) -> None:
    """One mypyc run per package, from its source root, so module names come out as the package's
    and mypyc's shared group library lands on the package's import path."""
    for src, modules in MODULES.items():
        if only is not None and only not in src:
            continue
        print(f"mypyc: {len(modules)} modules under {src}", flush=True)
        subprocess.run(
            [python, "-m", "mypyc", *modules],
            cwd=root / src,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # mypyc leaves its generated C, setup.py and mypy cache there: only the extensions are kept.
        for folder in ("build", ".mypy_cache"):
            shutil.rmtree(root / src / folder, ignore_errors=True)


def module_names(only: str | None = None) -> list[str]:
    return [
        path.removesuffix(".py").replace("/", ".")
        for src, modules in MODULES.items()
        if only is None or only in src
        for path in modules
    ]


def verify(python: str, only: str | None = None) -> int:
    """Import every listed module with `python` (the bench's) and report any that is not compiled."""
    check = (
        "import importlib, sys\n"
        "bad = [m for m in sys.argv[1:] if not importlib.import_module(m).__file__.endswith('.so')]\n"
        "print('not compiled:', *bad) if bad else print('all', len(sys.argv) - 1, 'compiled')\n"
        "sys.exit(1 if bad else 0)\n"
    )
    return subprocess.run([python, "-c", check, *module_names(only)], check=False).returncode


_GROUPS = ("gateway", "scheduler", "functions", "total")


def summarise(out_dirs: list[Path]) -> list[str]:
    """Scenario a's medians of each bench run under `out_dirs` (the report.json files in them):
    load average at the start, inv/s, p50/p99 and CPU µs per invocation per process group."""
    rows = ["run | load | conns | inv/s | p50 ms | p99 ms | " + " | ".join(f"{g} µs" for g in _GROUPS)]
    for out_dir in out_dirs:
        for path in sorted(out_dir.glob("**/report.json")):
            report: dict[str, Any] = json.loads(path.read_text())
            load = report["loadavg"]["start"][0]
            for cell in report["scenarios"].get("a", {}).get("results", []):
                cpu = cell["cpu_us_per_request"]
                rows.append(
                    f"{out_dir.name} | {load:.1f} | {cell['connections']} | {cell['rps']['median']:,.0f} | "
                    f"{cell['p50_ms']['median']:.2f} | {cell['p99_ms']['median']:.2f} | "
                    + " | ".join(f"{cpu[g]['median']:.0f}" for g in _GROUPS)
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("build", "verify", "clean", "rejected", "summarise"))
    parser.add_argument("dirs", nargs="*", type=Path, help="bench --out folders (summarise)")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter that builds (build) or imports (verify)"
    )
    parser.add_argument("--only", help="only the source roots whose path contains this, e.g. gateway")
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.python, args.only)
        return verify(args.python, args.only)
    if args.action == "verify":
        return verify(args.python, args.only)
    if args.action == "summarise":
        print("\n".join(summarise(args.dirs)))
        return 0
    if args.action == "rejected":
        for path, reason in REJECTED.items():
            print(f"{path}: {reason}")
        return 0
    for removed in clean():
        print(f"removed {removed.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
