"""The container suite needs a docker engine and the images `make images` builds.

Without an engine the whole suite is skipped with the reason, unless CI is set: there a
missing engine fails the run, so CI can never skip it silently. Every container the suite
starts carries this run's label; whatever is left at the end is removed, and the leak is
reported as an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The image catalog and the engine probe live in scripts/images (`python -m scripts.images`).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.images.catalog import IMAGES  # noqa: E402
from scripts.images.engine import docker, engine_problem, image_exists, running_in_ci  # noqa: E402

# The reaper image (testcontainers/ryuk) cannot be pulled here; cleanup is ours (below).
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

from .harness import IMAGE_TAG, RUN_ID, RUN_LABEL  # noqa: E402

_PROBLEM = engine_problem()


@pytest.fixture(scope="session", autouse=True)
def container_engine() -> Iterator[None]:
    if _PROBLEM is not None:
        if running_in_ci():
            pytest.fail(f"CI is set but no container engine can be used: {_PROBLEM}", pytrace=False)
        pytest.skip(f"no container engine: {_PROBLEM}")
    missing = [spec.ref(IMAGE_TAG) for spec in IMAGES if not image_exists(spec.ref(IMAGE_TAG))]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; run `make images TAG={IMAGE_TAG}`", pytrace=False)
    yield
    _remove_leftovers()


def _remove_leftovers() -> None:
    listed = docker("ps", "--all", "--quiet", "--filter", f"label={RUN_LABEL}={RUN_ID}").stdout.split()
    if listed:
        docker("rm", "--force", "--volumes", *listed)
    assert not listed, f"the suite left containers behind (now removed): {', '.join(listed)}"
