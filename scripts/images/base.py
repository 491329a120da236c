"""The base image: the official Python image where it can be had, else a locally bootstrapped one.

The offline base is Debian 12 with its own Python 3.11 (/usr/bin/python3), made by mmdebstrap
from Debian's package mirror and `docker import`ed. It is rebuilt only when its inputs change:
their hash is kept as a label on the image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from scripts.images.engine import EngineError, docker, image_exists, image_label

OFFLINE_BASE = "nanofaas/base-python:bookworm"
INPUTS_LABEL = "org.nanofaas.base.inputs"
PULL_TIMEOUT_S = 300.0
BOOTSTRAP_TIMEOUT_S = 900.0

# The `essential` variant is minbase without apt: an air-gapped image has no use for apt and its
# libraries (~24 MB). The merged-usr hook makes the /bin -> /usr/bin layout itself; the usrmerge
# package would bring all of Perl (~50 MB). Docs, man pages, locales and iconv modules (Python
# does not use them) are not unpacked; copyright files are kept.
MMDEBSTRAP_ARGS: tuple[str, ...] = (
    "--variant=essential",
    # grpcio's extension needs the C++ runtime, which minbase had only through apt.
    "--include=python3,python3-venv,libstdc++6",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    '--aptopt=Acquire::Languages "none"',
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/lintian/*",
    "--dpkgopt=path-exclude=/usr/lib/*/gconv/*",
    "--dpkgopt=path-include=/usr/lib/*/gconv/gconv-modules*",
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log',
    "bookworm",
)
IMPORT_CHANGES: tuple[str, ...] = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/usr/bin/python3"]',
)


class BaseImageError(RuntimeError):
    """No base image can be had; the message says why and what to do."""


def inputs_key() -> str:
    """Hash of everything that decides the offline base's content (a Debian point release aside)."""
    payload = json.dumps({"mmdebstrap": MMDEBSTRAP_ARGS, "import": IMPORT_CHANGES}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def choose_base(requested: str | None, offline: bool, default: str, say: Callable[[str], None]) -> str:
    """The base to build on.

    An explicitly requested base must exist locally or be pullable. The default (the official
    image) is used when present or pullable; otherwise, or with `offline`, the offline base.
    """
    if requested is not None:
        if image_exists(requested) or _pull(requested, say):
            return requested
        raise BaseImageError(f"base image {requested} is neither present nor pullable")
    if not offline and (image_exists(default) or _pull(default, say)):
        return default
    say(f"{default} cannot be had: using the offline base {OFFLINE_BASE}")
    ensure_offline_base(say)
    return OFFLINE_BASE


def _pull(ref: str, say: Callable[[str], None]) -> bool:
    say(f"pulling {ref}")
    try:
        result = docker("pull", ref, timeout=PULL_TIMEOUT_S, check=False)
    except EngineError as exc:
        say(f"cannot pull {ref}: {exc}")
        return False
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        say(f"cannot pull {ref}: {lines[-1]}")
    return result.returncode == 0


def ensure_offline_base(say: Callable[[str], None]) -> None:
    """Build OFFLINE_BASE unless an image with the same inputs hash exists."""
    key = inputs_key()
    if image_label(OFFLINE_BASE, INPUTS_LABEL) == key:
        say(f"offline base {OFFLINE_BASE} is up to date (inputs {key})")
        return
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            "mmdebstrap is not installed: `apt-get install mmdebstrap`, or pass --base-image"
        )
    say(f"bootstrapping {OFFLINE_BASE} with mmdebstrap (Debian 12, inputs {key}; about 30 s)")
    with tempfile.TemporaryDirectory(prefix="nanofaas-base-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        log = Path(scratch) / "mmdebstrap.log"
        try:
            with log.open("w") as out:
                result = subprocess.run(
                    ["mmdebstrap", *MMDEBSTRAP_ARGS, str(rootfs)],
                    stdout=out, stderr=subprocess.STDOUT, timeout=BOOTSTRAP_TIMEOUT_S, check=False,
                )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BaseImageError(f"mmdebstrap did not finish within {BOOTSTRAP_TIMEOUT_S:.0f} s") from exc
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-4000:].strip()
            raise BaseImageError(f"mmdebstrap failed (exit {result.returncode}):\n{tail}")
        changes = [*IMPORT_CHANGES, f"LABEL {INPUTS_LABEL}={key}"]
        docker(
            "import", *(f"--change={change}" for change in changes), str(rootfs), OFFLINE_BASE, timeout=300
        )
