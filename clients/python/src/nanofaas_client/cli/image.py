"""`nanofaas fn deploy --image-build`: the function's folder as an image FROM the runtime image.

For backends that run images (Kubernetes). The build context is made in a
temporary folder: the function's files under `function/`, and, when
requirements.txt lists packages, their wheels built here on the host (`pip
wheel`), installed in the image with `pip install --no-index`, so the build
needs no network (docs/containers.md: pip inside a container build may reach no
index). The tag is `<registry>/<name>:<hash>` (or `nanofaas-fn/<name>:<hash>`
without a registry), the hash that of everything the image is made of: the base
image's reference, the Dockerfile and every file of the folder; an image that
exists already is not built again. With a registry it is pushed.

Every command is an argv list (no shell); the docker binary is `$NANOFAAS_DOCKER`
or `docker` on PATH.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nanofaas_client.cli.venvs import VenvError, requirement_lines, run_step

DEFAULT_BASE_IMAGE = "nanofaas/python-runtime:dev"
LOCAL_REPOSITORY = "nanofaas-fn"
REQUIREMENTS = "requirements.txt"
# Folders of a function that never belong in its image.
_SKIPPED = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_WHEELS_TIMEOUT_S = 900
_BUILD_TIMEOUT_S = 1800
_PUSH_TIMEOUT_S = 900
_INSPECT_TIMEOUT_S = 60
_HASH_CHARS = 16
# host[:port][/path...], as docker accepts it before a repository name.
_REGISTRY = re.compile(
    r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*/?$"
)


class ImageError(Exception):
    """The image could not be built or pushed; the message says why (with the tool's last lines)."""


class EngineMissing(ImageError):
    """No docker binary to build with."""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    tag: str
    built: bool  # False: an image with this content existed already
    pushed: bool


def docker_binary() -> str:
    """The docker CLI to run, or EngineMissing with what to do about it."""
    configured = os.environ.get("NANOFAAS_DOCKER", "").strip() or "docker"
    found = shutil.which(configured)
    if found is None:
        raise EngineMissing(
            f"cannot build the function's image: {configured!r} is not on PATH.\n"
            "  Install Docker (or set NANOFAAS_DOCKER to a docker-compatible CLI), or deploy\n"
            "  without --image-build / --registry for the local backend."
        )
    return found


def registry_problem(registry: str) -> str | None:
    """Why `registry` cannot prefix an image name, or None."""
    if _REGISTRY.fullmatch(registry):
        return None
    return f"{registry!r} is not a registry: expected host[:port][/path], e.g. registry.example:5000/team"


def repository_name(function: str) -> str:
    """A function name as a docker repository path component (lower case, single separators)."""
    lowered = re.sub(r"[^a-z0-9]+", "-", function.lower()).strip("-")
    return lowered or "function"


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in _SKIPPED for part in relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            yield relative


def dockerfile(base_image: str, with_requirements: bool) -> str:
    lines = [
        "# Made by `nanofaas fn deploy --image-build`: the function on the runtime image.",
        f"FROM {base_image}",
    ]
    if with_requirements:
        lines += [
            "COPY wheels/ /tmp/nanofaas-wheels/",
            f"COPY function/{REQUIREMENTS} /tmp/nanofaas-wheels/{REQUIREMENTS}",
            "RUN python -m pip install --no-index --no-cache-dir --find-links /tmp/nanofaas-wheels"
            f" --target /function/.packages --requirement /tmp/nanofaas-wheels/{REQUIREMENTS}",
            "ENV PYTHONPATH=/function:/function/.packages",
        ]
    lines += ["COPY function/ /function/", ""]
    return "\n".join(lines)


def content_hash(folder: Path, base_image: str, docker_file: str) -> str:
    digest = hashlib.sha256()
    for part in (base_image, docker_file):
        digest.update(part.encode() + b"\0")
    for relative in _files(folder):
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((folder / relative).read_bytes()).digest())
    return digest.hexdigest()[:_HASH_CHARS]


def image_tag(function: str, digest: str, registry: str = "") -> str:
    repository = registry.rstrip("/") if registry else LOCAL_REPOSITORY
    return f"{repository}/{repository_name(function)}:{digest}"


def _step(argv: list[str], timeout_s: float, on_line: Callable[[str], None], what: str) -> None:
    try:
        run_step(argv, timeout_s, on_line)
    except VenvError as exc:
        raise ImageError(f"{what} failed: {exc}") from None


def _exists(docker: str, tag: str) -> bool:
    try:
        result = subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_INSPECT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def build_image(
    folder: Path,
    function: str,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    registry: str = "",
    on_line: Callable[[str], None] = lambda _: None,
) -> BuiltImage:
    """Build (unless present) and, with a registry, push the function's image; its tag."""
    docker = docker_binary()
    requirements = folder / REQUIREMENTS
    with_requirements = requirements.is_file() and bool(requirement_lines(requirements.read_text()))
    docker_file = dockerfile(base_image, with_requirements)
    tag = image_tag(function, content_hash(folder, base_image, docker_file), registry)
    built = False
    if not _exists(docker, tag):
        with tempfile.TemporaryDirectory(prefix="nanofaas-image-") as scratch:
            context = Path(scratch)
            target = context / "function"
            for relative in _files(folder):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / relative, target / relative)
            target.mkdir(exist_ok=True)
            (context / "Dockerfile").write_text(docker_file)
            if with_requirements:
                on_line(f"building wheels for {requirements}")
                wheels = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input"]
                wheels += ["--wheel-dir", str(context / "wheels"), "--requirement", str(requirements)]
                _step(wheels, _WHEELS_TIMEOUT_S, on_line, "pip wheel (the function's requirements)")
            on_line(f"building image {tag} FROM {base_image}")
            # No network in the build: everything it installs is in the context.
            build = [docker, "build", "--network", "none", "--tag", tag, str(context)]
            _step(build, _BUILD_TIMEOUT_S, on_line, "docker build")
        built = True
    pushed = False
    if registry:
        on_line(f"pushing {tag}")
        _step([docker, "push", tag], _PUSH_TIMEOUT_S, on_line, "docker push")
        pushed = True
    return BuiltImage(tag, built, pushed)
