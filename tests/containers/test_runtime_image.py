"""The runtime image alone: a handler directory mounted at /function, served over HTTP.

Also the example function image built FROM it (runtimes/python/examples/function-image):
the handler baked in, still read-only and non-root.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scripts.images.engine import build, docker

from .harness import (
    answers,
    exit_code,
    free_port,
    hardened,
    http,
    image_ref,
    logs_of,
    probe_function_dir,
    wait_until,
)

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "examples" / "function-image"


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    return probe_function_dir(tmp_path)


@contextmanager
def serve(ref: str, port: int, volumes: dict[Path, str] | None = None) -> Iterator[str]:
    """Run the image on the host's loopback at `port`; yields the base URL once /health is 200."""
    container = hardened(ref, "host", env={"PORT": str(port), "HOST": "127.0.0.1"}, volumes=volumes)
    with container:
        base = f"http://127.0.0.1:{port}"

        def alive() -> None:
            code = exit_code(container)
            assert code is None, f"{ref} exited with {code}:\n{logs_of(container)}"

        wait_until(answers(f"{base}/health"), f"{ref} /health", alive=alive)
        yield base


def test_runtime_serves_a_mounted_handler_as_non_root_on_a_read_only_root(function_dir: Path) -> None:
    with serve(image_ref("python-runtime"), free_port(), {function_dir: "/function"}) as base:
        assert http("GET", f"{base}/health").json() == {"status": "ok"}
        reply = http("POST", f"{base}/invoke", {"input": {"n": 1}, "metadata": {}})
        assert reply.status == 200, reply.body
        assert reply.json() == {
            "input": {"n": 1},
            "uid": 10001,
            "gid": 10001,
            "rootWritable": False,
            "functionWritable": False,
            "tmpWritable": True,
        }
        bad = http("POST", f"{base}/invoke", raw=b"{not json")
        assert bad.status == 400, bad.body
        assert bad.json()["error"]["code"] == "INVALID_REQUEST"


@pytest.fixture
def example_image(tmp_path: Path) -> Iterator[str]:
    """The example built FROM the runtime image, with no network for its RUN steps."""
    ref = f"nanofaas-test/word-count:{uuid.uuid4().hex[:12]}"
    try:
        build(
            EXAMPLE_DIR,
            ref,
            build_args=[f"RUNTIME_IMAGE={image_ref('python-runtime')}"],
            network="none",
            log=tmp_path / "build.log",
            timeout=300,
        )
        yield ref
    finally:
        docker("rmi", "--force", ref, check=False)


def test_example_function_image_runs_its_baked_in_handler(example_image: str) -> None:
    with serve(example_image, free_port()) as base:
        reply = http("POST", f"{base}/invoke", {"input": {"text": "a b A"}, "metadata": {}})
        assert reply.status == 200, reply.body
        assert reply.json() == {"words": 3, "distinct": 2}
