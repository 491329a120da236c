"""Pytest fixtures: ``fake_cluster`` (a fresh cluster per test) and ``fake_kubeconfig``.

Registered through the ``pytest11`` entry point, so any suite with nanofaas-fakekube installed
has them. Teardown stops the cluster whatever the test's outcome, killing every container
process group it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import FakeCluster


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(work_dir=tmp_path / "fakekube")
    with cluster:
        yield cluster


@pytest.fixture
def fake_kubeconfig(fake_cluster: FakeCluster, tmp_path: Path) -> Path:
    """A kubeconfig for the cluster whose requests audit as user ``test``."""
    return fake_cluster.write_kubeconfig(tmp_path / "kubeconfig", user="test")
