"""Per-function virtualenvs for `fn deploy` on the local backend, cached by the requirements' hash.

A folder with a requirements.txt gets its own virtualenv, so its packages never
touch the platform's. The runtime must run inside it, so the venv also sees
`nanofaas-runtime`: a `.pth` file adds this interpreter's site directories
*after* the venv's own (the function's requirements win; the runtime and its
dependencies come from where the CLI found them). That works offline: only the
function's own requirements are installed, from wherever pip is configured to
find them.

Cache: `$NANOFAAS_CACHE_DIR/venvs/<key>` (default `~/.cache/nanofaas`, or
`$XDG_CACHE_HOME/nanofaas`). The key hashes the normalised requirements, this
Python's version and the site it links, so the same requirements reuse one
venv. A venv is built under a temporary name and renamed when complete, so an
interrupted install never leaves a half-built venv behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

READY_MARKER = ".nanofaas-ready"
PTH_NAME = "_nanofaas_platform.pth"
# Bounds: creating the venv, then installing the requirements.
_VENV_TIMEOUT_S = 120
_INSTALL_TIMEOUT_S = 900
_OUTPUT_TAIL_LINES = 20


class VenvError(Exception):
    """The virtualenv could not be built; the message says why (with pip's last lines)."""


@dataclass(frozen=True, slots=True)
class FunctionVenv:
    path: Path
    created: bool

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def cache_dir() -> Path:
    configured = os.environ.get("NANOFAAS_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nanofaas"


def requirement_lines(text: str) -> list[str]:
    """The requirements that matter: comments and blank lines dropped, whitespace trimmed."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def platform_sites() -> list[str]:
    """Where this interpreter finds nanofaas-runtime and its dependencies."""
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    return [path for path in dict.fromkeys(sites) if Path(path).is_dir()]


def venv_key(requirements: list[str], sites: list[str]) -> str:
    material = "\n".join([sys.version, *sites, "--", *sorted(requirements)])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


def run_step(argv: list[str], timeout_s: float, on_line: Callable[[str], None]) -> None:
    """Run without a shell, handing every output line to `on_line`; VenvError with the tail on failure."""
    tail: list[str] = []
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
    except OSError as exc:
        raise VenvError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    # The output is read to its end, so the bound is a timer that kills the process.
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        with process:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip()
                if line:
                    tail = [*tail[-(_OUTPUT_TAIL_LINES - 1) :], line]
                    on_line(line)
            code = process.wait()
    finally:
        timer.cancel()
    if killed.is_set():
        raise VenvError(f"{argv[0]} did not finish within {timeout_s:g} s")
    if code != 0:
        details = "\n".join(tail)
        raise VenvError(f"{' '.join(argv[:4])} … failed (exit {code}):\n{details}")


def ensure_venv(requirements_file: Path, on_line: Callable[[str], None] = lambda _: None) -> FunctionVenv:
    """The cached venv for these requirements, built first if needed."""
    requirements = requirement_lines(requirements_file.read_text())
    sites = platform_sites()
    root = cache_dir() / "venvs"
    final = root / venv_key(requirements, sites)
    if (final / READY_MARKER).is_file():
        return FunctionVenv(final, created=False)
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=root))
    try:
        on_line(f"creating virtualenv for {requirements_file}")
        run_step([sys.executable, "-m", "venv", "--clear", str(building)], _VENV_TIMEOUT_S, on_line)
        (_site_packages(building) / PTH_NAME).write_text(
            "".join(f"import site; site.addsitedir({path!r})\n" for path in sites)
        )
        python = str(building / "bin" / "python")
        if requirements:
            on_line(f"installing {', '.join(requirements)}")
            install = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            run_step([*install, "-r", str(requirements_file.resolve())], _INSTALL_TIMEOUT_S, on_line)
        try:
            run_step([python, "-c", "import nanofaas_runtime"], _VENV_TIMEOUT_S, on_line)
        except VenvError:
            raise VenvError(
                "nanofaas-runtime is not importable from this interpreter's site, so the venv cannot "
                "run it: install it where the CLI runs (pip install -e runtimes/python in a checkout)"
            ) from None
        (building / READY_MARKER).write_text("\n".join(requirements) + "\n")
        if final.exists():  # a broken leftover (no marker): replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            building.rename(final)
        except OSError:
            if not (final / READY_MARKER).is_file():  # not a concurrent build that finished first
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return FunctionVenv(final, created=True)
