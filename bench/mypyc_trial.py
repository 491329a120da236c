"""Compile the warm invoke path's hottest own modules with mypyc, in place, for a bench trial.

Issue 16 named mypyc as an idea to measure ("Round three, perf-mypyc" in docs/performance.md
has the result). This builds the modules of `MODULES` as C extensions next to their sources:
with the packages installed editable (the bench's `.venv-bench`), Python imports the `.so`
before the `.py` of the same name, so `make bench` then runs the compiled code. Nothing is
installed and no source changes; `clean` removes every product again (they are not
git-ignored, on purpose: a compiled tree must not go unnoticed).

    .venv/bin/python bench/mypyc_trial.py build     # needs mypy (mypyc) in that venv, and gcc
    .venv/bin/python bench/mypyc_trial.py verify --python .venv-bench/bin/python
    flock /tmp/nanofaas-bench.lock .venv-bench/bin/python -m bench --scenarios a ...
    .venv/bin/python bench/mypyc_trial.py clean

The building interpreter must be the same CPython version as the bench's (the extensions are
built for it). `REJECTED` lists the hot modules mypyc would not compile, with its error.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Source root of each package -> its modules to compile (paths relative to that root), the own
# code on the warm path by the py-spy profile of "The profile after round two".
MODULES: dict[str, tuple[str, ...]] = {
    "services/gateway/src": tuple(
        f"nanofaas_gateway/{name}.py"
        for name in (
            "app",
            "body_limit",
            "connection_limits",
            "convert",
            "fast_path",
            "http_cycle",
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

# Hot modules left interpreted, with what mypyc (mypy 2.4.1) said.
REJECTED: dict[str, str] = {
    "services/gateway/src/nanofaas_gateway/scheduler_stream.py": (
        "async generators are unimplemented (the Stream's request iterator)"
    ),
    "services/scheduler/src/nanofaas_scheduler/grpc_service.py": (
        "async generators are unimplemented (four: the Stream's and Watch's response iterators)"
    ),
    "runtimes/python/src/nanofaas_runtime/asgi.py": (
        "nested class definitions not supported (the uvicorn.Server subclass in _server)"
    ),
}


def products(src: Path) -> list[Path]:
    """Everything a build leaves under one source root: extensions, mypyc's group library,
    its build folder and the mypy cache it writes there."""
    found = [path for path in src.rglob("*.so") if ".cpython-" in path.name or "__mypyc" in path.name]
    found += [path for path in (src / "build", src / ".mypy_cache") if path.exists()]
    return sorted(found)


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


def build(python: str, root: Path = ROOT) -> None:
    """One mypyc run per package, from its source root, so module names come out as the package's
    and mypyc's shared group library lands on the package's import path."""
    for src, modules in MODULES.items():
        print(f"mypyc: {len(modules)} modules under {src}", flush=True)
        subprocess.run(
            [python, "-m", "mypyc", *modules],
            cwd=root / src,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def module_names() -> list[str]:
    return [path.removesuffix(".py").replace("/", ".") for modules in MODULES.values() for path in modules]


def verify(python: str) -> int:
    """Import every listed module with `python` (the bench's) and report any that is not compiled."""
    check = (
        "import importlib, sys\n"
        "bad = [m for m in sys.argv[1:] if not importlib.import_module(m).__file__.endswith('.so')]\n"
        "print('not compiled:', *bad) if bad else print('all', len(sys.argv) - 1, 'compiled')\n"
        "sys.exit(1 if bad else 0)\n"
    )
    return subprocess.run([python, "-c", check, *module_names()], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("build", "verify", "clean", "rejected"))
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter that builds (build) or imports (verify)"
    )
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.python)
        return verify(args.python)
    if args.action == "verify":
        return verify(args.python)
    if args.action == "rejected":
        for path, reason in REJECTED.items():
            print(f"{path}: {reason}")
        return 0
    for removed in clean():
        print(f"removed {removed.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
