"""Wheels for the images, made on the host: pip inside a container build cannot reach an index.

`build/wheels/deps` holds every third-party wheel any image needs (pinned by constraints.txt and
reused while the inputs are unchanged), `build/wheels/own` our packages' wheels, rebuilt on
every run with a fixed timestamp so unchanged sources give byte-identical wheels (and so
docker's layer cache keeps hitting), and `build/wheels/requirements/<image>.txt` the
third-party requirements of the packages one image holds. An image installs those, then its
own wheels without dependencies: so it holds exactly the catalog's packages.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from scripts.images.catalog import IMAGES, PACKAGE_DIRS, ROOT

WHEELS_DIR = ROOT / "build" / "wheels"
DEPS_DIR = WHEELS_DIR / "deps"
OWN_DIR = WHEELS_DIR / "own"
REQUIREMENTS_DIR = WHEELS_DIR / "requirements"
CONSTRAINTS = ROOT / "constraints.txt"
STAMP = DEPS_DIR / ".inputs"
# 1980-01-01, the earliest time a zip file can hold: wheels built with it are reproducible.
SOURCE_DATE_EPOCH = "315532800"
IMAGE_PYTHON = (3, 11)
PIP_TIMEOUT_S = 900.0


class WheelhouseError(RuntimeError):
    """The wheels cannot be made here; the message says why."""


def _project_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise WheelhouseError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def third_party_requirements(packages: tuple[str, ...] = tuple(PACKAGE_DIRS)) -> list[str]:
    """The dependencies of `packages` (ours) that are not packages of ours, sorted."""
    requirements: set[str] = set()
    for name in packages:
        project = tomllib.loads((PACKAGE_DIRS[name] / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            if _project_name(requirement) not in PACKAGE_DIRS:
                requirements.add(requirement.strip())
    return sorted(requirements)


def image_requirements() -> None:
    """Write each image's third-party requirements to REQUIREMENTS_DIR/<short name>.txt."""
    shutil.rmtree(REQUIREMENTS_DIR, ignore_errors=True)
    REQUIREMENTS_DIR.mkdir(parents=True)
    for spec in IMAGES:
        lines = third_party_requirements(spec.packages)
        (REQUIREMENTS_DIR / f"{spec.short_name}.txt").write_text("\n".join(lines) + "\n")


def _check_interpreter() -> None:
    """Compiled wheels must match the images' CPython (3.11 on Debian 12 and in python:3.11)."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != IMAGE_PYTHON:
        wanted = ".".join(map(str, IMAGE_PYTHON))
        raise WheelhouseError(
            f"the image wheels must be built by CPython {wanted}, the images' Python; this is "
            f"{platform.python_implementation()} {platform.python_version()} (run with PYTHON=python{wanted})"
        )
    if sys.platform != "linux":
        raise WheelhouseError("the image wheels must be built on Linux (the images' platform)")


def _pip(*args: str, log: Path, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    try:
        with log.open("w") as out:
            result = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=PIP_TIMEOUT_S, check=False
            )
    except subprocess.TimeoutExpired as exc:
        raise WheelhouseError(f"pip {args[0]} did not finish within {PIP_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:].strip()
        raise WheelhouseError(f"pip {args[0]} failed (exit {result.returncode}), see {log}:\n{tail}")


def _inputs_key(requirements: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (CONSTRAINTS.read_text(), "\n".join(requirements), platform.machine(), sys.version):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def third_party_wheels(log_dir: Path) -> bool:
    """Fill DEPS_DIR; returns False when the wheels there already match the inputs."""
    _check_interpreter()
    requirements = third_party_requirements()
    key = _inputs_key(requirements)
    if STAMP.is_file() and STAMP.read_text().strip() == key:
        return False
    shutil.rmtree(DEPS_DIR, ignore_errors=True)
    DEPS_DIR.mkdir(parents=True)
    _pip(
        "wheel", "--wheel-dir", str(DEPS_DIR), "--constraint", str(CONSTRAINTS), *requirements,
        log=log_dir / "wheels-deps.log",
    )  # fmt: skip
    STAMP.write_text(key + "\n")
    return True


def own_wheels(log_dir: Path) -> None:
    """Rebuild OWN_DIR from our package sources (pure Python; no dependencies resolved).

    Each package is built from a clean copy of its pyproject.toml and src/: setuptools reuses a
    `build/` folder left in the source tree, which could carry a deleted module into the wheel.
    """
    _check_interpreter()
    shutil.rmtree(OWN_DIR, ignore_errors=True)
    OWN_DIR.mkdir(parents=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    with tempfile.TemporaryDirectory(prefix="nanofaas-wheels-") as scratch:
        sources = []
        for name, directory in PACKAGE_DIRS.items():
            copy = Path(scratch) / name
            copy.mkdir()
            shutil.copy2(directory / "pyproject.toml", copy / "pyproject.toml")
            shutil.copytree(
                directory / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
            sources.append(str(copy))
        _pip(
            "wheel", "--no-deps", "--wheel-dir", str(OWN_DIR), *sources,
            log=log_dir / "wheels-own.log", env=env,
        )  # fmt: skip
