"""The CLI's user path on the kubernetes backend: init, deploy as an image, invoke, logs.

`fn deploy --registry` runs docker; here a stub `docker` on PATH records what it is asked
(no registry is reachable, and the fake cluster pulls nothing): the build and the push of
the tag. The fake cluster then "pulls" that tag as the runtime with the function's folder on
its path, which is what the real image holds (built for real in tests/containers).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from nanofaas_client.cli import image
from nanofaas_client.cli.main import cli

from fakekube import FakeCluster

from .conftest import BIN

STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_DOCKER_LOG"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(1 if sys.argv[1:3] == ["image", "inspect"] else 0)
"""
REGISTRY = "registry.example:5000/team"


def nf(platform: Any, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--url", platform.base_url, *args], catch_exceptions=False)


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STUB.format(python=sys.executable))
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("NANOFAAS_DOCKER", raising=False)
    monkeypatch.setenv("STUB_DOCKER_LOG", str(tmp_path / "docker.jsonl"))
    return tmp_path / "docker.jsonl"


def test_init_deploy_as_an_image_invoke_and_read_the_logs(
    platform: Any, cluster: FakeCluster, fn_name: str, tmp_path: Path, docker_log: Path
) -> None:
    assert nf(platform, "fn", "init", fn_name, "--dir", str(tmp_path)).exit_code == 0
    folder = tmp_path / fn_name
    base = image.DEFAULT_BASE_IMAGE
    tag = image.image_tag(fn_name, image.content_hash(folder, base, image.dockerfile(base, False)), REGISTRY)
    path = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    cluster.add_image(
        tag, [sys.executable, "-m", "nanofaas_runtime"], env={"PATH": path, "PYTHONPATH": str(folder)}
    )

    deployed = nf(platform, "fn", "deploy", str(folder), "--registry", REGISTRY)
    assert deployed.exit_code == 0, deployed.output
    assert deployed.stdout == f"NAME    {fn_name}\nRESULT  created\nIMAGE   {tag}\n"
    calls = [json.loads(line) for line in docker_log.read_text().splitlines()]
    assert [call[0] for call in calls] == ["image", "build", "push"] and calls[-1] == ["push", tag]
    spec = json.loads(nf(platform, "-o", "json", "fn", "get", fn_name).stdout)
    assert (spec["image"], spec["executionMode"]) == (tag, "WARM")

    invoked = nf(platform, "-o", "json", "invoke", fn_name, "-d", '{"name": "k8s"}')
    assert invoked.exit_code == 0, invoked.output
    result = json.loads(invoked.stdout)
    assert result["output"] == {"message": "Hello, k8s!"}

    (line,) = logged(platform, fn_name, result["executionId"], "greeting k8s")
    assert line["stream"] == "stdout"
    table = nf(platform, "logs", fn_name, "--exec", result["executionId"]).stdout
    assert f"stdout  {result['executionId'][:12]}  greeting k8s" in table
    assert nf(platform, "fn", "rm", fn_name).exit_code == 0


def logged(platform: Any, name: str, execution: str, text: str, timeout_s: float = 20) -> list[Any]:
    """`nanofaas -o json logs NAME --exec ID` once `text` is among them (written a moment later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = nf(platform, "-o", "json", "logs", name, "--exec", execution)
        assert result.exit_code == 0, result.output
        lines = [json.loads(raw) for raw in result.stdout.splitlines()]
        found = [line for line in lines if line["message"] == text]
        if found or time.monotonic() > deadline:
            assert found, lines
            return found
        time.sleep(0.05)
