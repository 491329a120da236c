"""`nanofaas fn deploy DIR|FILE`: the manifest, made runnable from its folder.

Local backend (the default): the folder goes on PYTHONPATH (so `handler.py` is
found); a requirements.txt that lists anything gets the function's own
virtualenv (venvs.py) and the runtime is started from it (`runtimeCommand`). A
manifest that names its own `command` or `runtimeCommand` is registered as
written.

Image (`--image-build` or `--registry`, for backends that run images such as
Kubernetes): the folder is built into an image FROM the runtime image
(image.py) and the function is registered with that image. The CLI does not ask
the platform which backend it runs: the gateway knows no backends, so the user
says so, once per shell with NANOFAAS_IMAGE_BUILD=1 or NANOFAAS_REGISTRY.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nanofaas_client.cli.image import BuiltImage, build_image
from nanofaas_client.cli.venvs import FunctionVenv, ensure_venv, requirement_lines
from nanofaas_client.manifest import MANIFEST_NAME, ManifestError, load_manifest
from nanofaas_client.models import FunctionSpec

RUNTIME_IMAGE = "nanofaas/python-runtime"
REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True, slots=True)
class Prepared:
    spec: FunctionSpec
    folder: Path
    venv: FunctionVenv | None
    image: BuiltImage | None = None


def _is_runtime_image(image: str) -> bool:
    """Any tag or digest of nanofaas/python-runtime, under any registry host (the local backend's rule)."""
    repository = image.split("@", 1)[0]
    head, _, last = repository.rpartition("/")
    repository = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    return repository == RUNTIME_IMAGE or repository.endswith("/" + RUNTIME_IMAGE)


def manifest_path(target: Path) -> Path:
    path = target / MANIFEST_NAME if target.is_dir() else target
    if not path.is_file():
        raise ManifestError(f"{path}: no such file (a function folder has a {MANIFEST_NAME})")
    return path


def prepare(target: Path, on_line: Callable[[str], None]) -> Prepared:
    path = manifest_path(target)
    folder = path.parent.resolve()
    spec = load_manifest(path)
    runs_runtime = _is_runtime_image(str(spec["image"])) and not spec.get("command")
    if not runs_runtime:
        return Prepared(spec, folder, None)
    env = dict(spec.get("env") or {})
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), existing) if p)
    spec["env"] = env
    venv = None
    requirements = folder / REQUIREMENTS
    if (
        requirements.is_file()
        and requirement_lines(requirements.read_text())
        and not spec.get("runtimeCommand")
    ):
        venv = ensure_venv(requirements, on_line)
        spec["runtimeCommand"] = shlex.join([str(venv.python), "-m", "nanofaas_runtime"])
    return Prepared(spec, folder, venv)


def prepare_image(
    target: Path, on_line: Callable[[str], None], *, base_image: str, registry: str
) -> Prepared:
    """The manifest with `image` set to the folder's image, built (and pushed with a registry)."""
    path = manifest_path(target)
    folder = path.parent.resolve()
    spec = load_manifest(path)
    image = build_image(folder, str(spec["name"]), base_image=base_image, registry=registry, on_line=on_line)
    spec["image"] = image.tag
    return Prepared(spec, folder, None, image)
