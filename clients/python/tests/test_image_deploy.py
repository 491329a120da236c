"""`fn deploy --image-build / --registry` with a stub `docker` on PATH that records its argv.

No registry is reachable here, so the push is checked by what the CLI asks docker to do; the
real build (a real engine, the image then running the handler) is tests/containers/test_function_image.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from nanofaas_client import Client
from nanofaas_client.cli import exit_codes, image, main

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.environ["STUB_DOCKER_LOG"]
with open(log, "a") as out:
    out.write(json.dumps(args) + "\\n")
if args[:2] == ["image", "inspect"]:
    sys.exit(0 if os.environ.get("STUB_DOCKER_PRESENT") else 1)
if args[0] == "build":
    context = args[-1]
    files = sorted(os.path.relpath(os.path.join(d, f), context) for d, _, fs in os.walk(context) for f in fs)
    with open(log + ".context", "w") as out:
        json.dump({{"files": files, "dockerfile": open(os.path.join(context, "Dockerfile")).read()}}, out)
    print("Step 1/3 : FROM base")
    if os.environ.get("STUB_DOCKER_FAIL") == "build":
        print("The command '/bin/sh -c pip install' returned a non-zero code: 1")
        sys.exit(1)
if args[0] == "push" and os.environ.get("STUB_DOCKER_FAIL") == "push":
    print("denied: requested access to the resource is denied")
    sys.exit(1)
"""


class Docker:
    """The stub's record: every argv, and the last build context."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "argv.jsonl"

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def context(self) -> dict[str, Any]:
        return dict(json.loads(Path(f"{self.log}.context").read_text()))


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Docker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("NANOFAAS_DOCKER", raising=False)
    recorded = Docker(tmp_path)
    monkeypatch.setenv("STUB_DOCKER_LOG", str(recorded.log))
    return recorded


Registered = list[dict[str, Any]]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Registered:
    """A scripted gateway that accepts registrations and keeps their bodies."""
    registered: Registered = []

    def answer(request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == ("POST", "/v1/functions"):
            registered.append(json.loads(request.content))
            return httpx.Response(201, json=registered[-1])
        return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "no"}})

    def client(url: str, **options: Any) -> Client:
        return Client(url, transport=httpx.MockTransport(answer), **options)

    monkeypatch.setattr(main, "Client", client)
    return registered


def run(*args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--url", "http://nf", *args])


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    assert run("fn", "init", "Hello_World", "--dir", str(tmp_path)).exit_code == 0
    (tmp_path / "Hello_World" / "__pycache__").mkdir()
    (tmp_path / "Hello_World" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    return tmp_path / "Hello_World"


def test_a_registry_deploy_builds_offline_tags_by_content_pushes_and_registers_the_tag(
    docker: Docker, gateway: Registered, hello: Path
) -> None:
    result = run("fn", "deploy", str(hello), "--registry", "registry.example:5000/team/")
    assert result.exit_code == 0, result.output
    (inspect, build, push) = docker.calls()
    tag = push[1]
    assert tag.startswith("registry.example:5000/team/hello-world:") and len(tag.rsplit(":", 1)[1]) == 16
    assert inspect == ["image", "inspect", "--format", "{{.Id}}", tag]
    assert build[:5] == ["build", "--network", "none", "--tag", tag]
    assert push == ["push", tag]
    (spec,) = gateway
    assert (spec["name"], spec["image"], spec["executionMode"]) == ("Hello_World", tag, "WARM")
    assert "PYTHONPATH" not in (spec.get("env") or {})  # the image has the folder on its path
    assert result.stdout == f"NAME    Hello_World\nRESULT  created\nIMAGE   {tag}\n"
    context = docker.context()
    assert context["files"] == [
        "Dockerfile",
        "function/function.yaml",
        "function/handler.py",
        "function/requirements.txt",
    ]
    assert context["dockerfile"].splitlines()[1] == f"FROM {image.DEFAULT_BASE_IMAGE}"
    assert "pip" not in context["dockerfile"]  # requirements.txt lists nothing


def test_the_same_content_is_not_built_again_and_a_change_is_a_new_tag(
    docker: Docker, gateway: Registered, hello: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("fn", "deploy", str(hello), "--image-build").exit_code == 0
    first = docker.calls()[-1][-2]  # build … --tag TAG CONTEXT
    assert first.startswith("nanofaas-fn/hello-world:")
    assert [call[0] for call in docker.calls()] == ["image", "build"]  # no registry: no push
    monkeypatch.setenv("STUB_DOCKER_PRESENT", "1")
    again = run("fn", "deploy", str(hello / "function.yaml"), "--image-build")
    assert again.exit_code == 0, again.output
    assert [call[0] for call in docker.calls()] == ["image", "build", "image"]
    assert "reusing image" in again.stderr
    assert gateway[-1]["image"] == first
    (hello / "handler.py").write_text((hello / "handler.py").read_text() + "\n# changed\n")
    base = run("fn", "deploy", str(hello), "--image-build", "--base-image", "nanofaas/python-runtime:1.2")
    assert base.exit_code == 0, base.output
    assert gateway[-1]["image"] != first


def test_requirements_become_wheels_in_the_context_installed_without_an_index(
    docker: Docker, gateway: Registered, hello: Path, tmp_path: Path
) -> None:
    wheel = tiny_wheel(tmp_path / "wheels")
    (hello / "requirements.txt").write_text(f"{wheel}\n")
    result = run("fn", "deploy", str(hello), "--image-build")
    assert result.exit_code == 0, result.output
    context = docker.context()
    assert f"wheels/{wheel.name}" in context["files"]
    assert "pip install --no-index" in context["dockerfile"]


@pytest.mark.parametrize(
    ("failing", "words"),
    [("build", "returned a non-zero code"), ("push", "denied: requested access")],
)
def test_a_failed_build_or_push_is_exit_9_with_dockers_words(
    docker: Docker,
    *,
    gateway: Registered,
    hello: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
    words: str,
) -> None:
    monkeypatch.setenv("STUB_DOCKER_FAIL", failing)
    result = run("fn", "deploy", str(hello), "--registry", "registry.example")
    assert result.exit_code == exit_codes.BUILD_FAILED
    assert f"docker {failing} failed" in result.stderr and words in result.stderr
    assert gateway == []  # nothing is registered with an image that is not there


def test_no_docker_is_exit_10_with_what_to_do(
    gateway: Registered, hello: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run("fn", "deploy", str(hello), "--image-build")
    assert result.exit_code == exit_codes.ENGINE_MISSING
    assert "'docker' is not on PATH" in result.stderr and "without --image-build" in result.stderr
    monkeypatch.setenv("NANOFAAS_DOCKER", "podman-remote")
    assert "'podman-remote' is not on PATH" in run("fn", "deploy", str(hello), "--registry", "r").stderr


@pytest.mark.parametrize("registry", ["has space", "UPPER.example/Team", "host:port", "-bad"])
def test_a_registry_that_cannot_prefix_an_image_is_a_usage_error(
    docker: Docker, gateway: Registered, hello: Path, registry: str
) -> None:
    result = run("fn", "deploy", str(hello), "--registry", registry)
    assert result.exit_code == exit_codes.USAGE
    assert "is not a registry" in result.stderr
    assert docker.calls() == []


def test_registry_from_the_environment(
    docker: Docker, gateway: Registered, hello: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOFAAS_REGISTRY", "localhost:5001")
    assert run("fn", "deploy", str(hello)).exit_code == 0
    assert docker.calls()[-1][0] == "push" and gateway[-1]["image"].startswith("localhost:5001/hello-world:")


def tiny_wheel(folder: Path) -> Path:
    """A real (pure Python) wheel of a one-module package, made without any build tool."""
    return make_wheel(folder, "tinydep", "0.1", {"tinydep.py": "GREETING = 'hi from tinydep'\n"})


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    content = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    records = []
    for path, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        records.append(f"{path},sha256={digest},{len(text.encode())}")
    records.append(f"{info}/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in {**content, f"{info}/RECORD": "\n".join(records) + "\n"}.items():
            archive.writestr(path, text)
    return wheel
