"""What each image is: its configuration, and what is installed in it (read from inside)."""

from __future__ import annotations

import json
import re

import pytest

from scripts.images.catalog import DEFAULT_BASE_IMAGE, IMAGES, ImageSpec
from scripts.images.engine import inspect

from .harness import IMAGE_TAG, USER, exit_code, hardened, logs_of, wait_until

VENV_PYTHON = "/opt/nanofaas/bin/python"

# Run inside each image (as root, to see every directory; read-only root, no network):
# what is installed, and what a final stage must not carry.
INVENTORY = """
import importlib.metadata, json, os, shutil, sysconfig
# The base's own pip and setuptools wheels, which `python3 -m venv` installs from.
BASE_WHEELS = ("/usr/share/python-wheels", os.path.join(sysconfig.get_path("stdlib"), "ensurepip"))
names = sorted({d.metadata["Name"].lower() for d in importlib.metadata.distributions()})
leftovers = []
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs.clear()
        continue
    leftovers += [os.path.join(top, d) for d in dirs if d == "pip" and top.endswith("/.cache")]
    if not top.startswith(BASE_WHEELS):
        leftovers += [os.path.join(top, f) for f in files if f.endswith(".whl")]
# Every installed top-level module imports: a shared library missing from the base shows here.
unimportable = {}
for module in sorted(importlib.metadata.packages_distributions()):
    if module.isidentifier() and module not in ("pip", "_distutils_hack"):
        try:
            importlib.import_module(module)
        except Exception as exc:
            unimportable[module] = repr(exc)
print(json.dumps({
    "unimportable": unimportable,
    "nanofaas": [n for n in names if n.startswith("nanofaas")],
    "pip": "pip" in names,
    "setuptools": "setuptools" in names,
    "tools": [t for t in ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as") if shutil.which(t)],
    "leftovers": leftovers,
}))
"""


@pytest.fixture(scope="module", params=IMAGES, ids=lambda spec: spec.repository)
def spec(request: pytest.FixtureRequest) -> ImageSpec:
    assert isinstance(request.param, ImageSpec)
    return request.param


def test_dockerfile_matches_the_catalog(spec: ImageSpec) -> None:
    """The wheels a Dockerfile copies are the catalog's packages; its stages share one base."""
    text = spec.dockerfile.read_text()
    assert f"ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}" in text.splitlines()
    froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(froms) == 2 and set(froms) == {"${BASE_IMAGE}"}, froms
    copied = re.findall(r"build/wheels/own/(\w+)-\*\.whl", text)
    assert sorted(copied) == sorted(name.replace("-", "_") for name in spec.packages)


def test_image_runs_as_a_numeric_non_root_user_without_a_shell(spec: ImageSpec) -> None:
    config = inspect("image", spec.ref(IMAGE_TAG))["Config"]
    assert config["User"] == USER
    # Exec form: docker records a shell-form ENTRYPOINT as ["/bin/sh", "-c", ...].
    assert config["Entrypoint"][:2] == [VENV_PYTHON, "-m"], config["Entrypoint"]
    assert not config["Cmd"]
    assert "/tmp" in (config["Volumes"] or {})
    assert not config.get("Healthcheck"), "Kubernetes probes the services; no HEALTHCHECK"


def test_image_holds_only_its_own_packages_and_no_build_leftovers(spec: ImageSpec) -> None:
    probe = hardened(spec.ref(IMAGE_TAG), "none", entrypoint=[VENV_PYTHON, "-c", INVENTORY], user="0:0")
    with probe:
        wait_until(lambda: exit_code(probe) is not None, f"the inventory of {spec.repository}")
        assert exit_code(probe) == 0, logs_of(probe)
        out, _ = probe.get_logs()
    inventory = json.loads(bytes(out).decode().strip().splitlines()[-1])
    assert inventory["nanofaas"] == sorted(spec.packages)
    assert inventory["unimportable"] == {}
    assert inventory["tools"] == []
    assert inventory["leftovers"] == []
    assert not inventory["setuptools"]
    # The runtime keeps pip: function images install their requirements with it.
    assert inventory["pip"] is (spec.repository == "nanofaas/python-runtime")
