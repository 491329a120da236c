"""`nanofaas fn deploy --image-build`'s image, built by the real engine and run.

A scaffolded function (`nanofaas fn init`) with a requirements.txt naming a real small
package: its wheels are built on the host, installed in the image with --no-index (the
build has no network), and the image FROM the runtime image serves the handler over the
function protocol. The push and the registration are tested with a stub docker
(clients/python/tests/test_image_deploy.py): no registry is reachable here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from nanofaas_client.cli import image
from nanofaas_client.cli.main import cli

from scripts.images.engine import docker

from .harness import free_port, http, image_ref
from .test_runtime_image import serve

HANDLER = """
import six


def handle(request, context=None):
    name = (request.get("input") or {}).get("name", "world")
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!", "six": six.__version__, "from": six.__file__}
"""


@pytest.fixture
def built(tmp_path: Path) -> Iterator[image.BuiltImage]:
    created = CliRunner().invoke(cli, ["fn", "init", "hello", "--dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    folder = tmp_path / "hello"
    (folder / "handler.py").write_text(HANDLER)
    (folder / "requirements.txt").write_text("six\n")
    lines: list[str] = []
    result = image.build_image(folder, "hello", base_image=image_ref("python-runtime"), on_line=lines.append)
    try:
        assert result.built and not result.pushed
        assert any("building wheels" in line for line in lines), lines
        yield result
    finally:
        docker("rmi", "--force", result.tag)


def test_the_built_image_runs_the_handler_with_its_requirements(built: image.BuiltImage) -> None:
    assert built.tag.startswith("nanofaas-fn/hello:")
    with serve(built.tag, free_port()) as base:
        reply = http("POST", f"{base}/invoke", {"input": {"name": "image"}, "metadata": {}})
        assert reply.status == 200, reply.body
        output = reply.json()
    assert output["message"] == "Hello, image!"
    assert output["from"].startswith("/function/.packages/")  # installed in the image, not the base
    # Installed from the wheels in the context, not from an index (the build had no network).
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", built.tag).stdout
    assert "pip install --no-index" in history
    env = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", built.tag).stdout)
    assert "PYTHONPATH=/function:/function/.packages" in env
