"""function.yaml is exactly a FunctionSpec; `fn init` writes one that round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from nanofaas_client.cli.scaffold import ScaffoldError, scaffold
from nanofaas_client.manifest import (
    FUNCTION_SPEC_FIELDS,
    ManifestError,
    dump_manifest,
    load_manifest,
    parse_manifest,
)


def test_a_manifest_is_a_spec() -> None:
    spec = parse_manifest("name: f\nimage: nanofaas/python-runtime\nconcurrency: 2\nenv: {A: 'b'}\n")
    assert spec == {"name": "f", "image": "nanofaas/python-runtime", "concurrency": 2, "env": {"A": "b"}}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: f\nimage: i\ntimeoutMS: 5\n", "unknown field(s) timeoutMS"),
        ("image: i\n", "missing required field(s) name"),
        ("- a\n", "must be a mapping"),
        ("name: [\n", "not valid YAML"),
        ("name: f\nimage: i\nenv: {N: 1}\n", "env must map names to strings"),
    ],
)
def test_bad_manifests_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest(text)


def test_dump_keeps_the_contract_order_and_round_trips() -> None:
    spec = {"env": {}, "concurrency": 3, "image": "i", "name": "f"}
    text = dump_manifest(spec)
    assert text.splitlines()[0] == "name: f"
    assert parse_manifest(text) == spec
    assert FUNCTION_SPEC_FIELDS[:2] == ("name", "image")


def test_the_autoscaling_fields_are_manifest_fields() -> None:
    spec = parse_manifest(
        "name: f\nimage: i\nminReplicas: 0\nmaxReplicas: 2\ntargetInFlight: 1\nscaleDownDelayMs: 500\n"
    )
    assert (spec["minReplicas"], spec["maxReplicas"], spec["scaleDownDelayMs"]) == (0, 2, 500)


def test_init_writes_the_three_files(tmp_path: Path) -> None:
    folder = scaffold("hello", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["function.yaml", "handler.py", "requirements.txt"]
    spec = load_manifest(folder / "function.yaml")
    assert (spec["name"], spec["executionMode"]) == ("hello", "WARM")
    compile((folder / "handler.py").read_text(), "handler.py", "exec")
    with pytest.raises(ScaffoldError, match="not empty"):
        scaffold("hello", tmp_path)
    with pytest.raises(ScaffoldError, match="not a function name"):
        scaffold("9lives", tmp_path)
