"""The dependency rules of the architecture hold (scripts/check_dependencies.py), and the check bites."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_dependencies", ROOT / "scripts" / "check_dependencies.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_dependencies"] = module
    spec.loader.exec_module(module)
    return module


def test_the_tree_follows_the_rules(checker: ModuleType) -> None:
    distributions = {m: list(n) for m, n in checker.importlib.metadata.packages_distributions().items()}
    assert [p for package in checker.PACKAGES for p in checker.check(package, distributions)] == []


def test_a_service_importing_the_runtime_is_reported(
    checker: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_dir = tmp_path / "services" / "fake"
    (package_dir / "src" / "nanofaas_fake").mkdir(parents=True)
    (package_dir / "src" / "nanofaas_fake" / "leak.py").write_text(
        "from nanofaas_runtime.outcome import Outcome\nimport orjson\n"
    )
    (package_dir / "pyproject.toml").write_text('[project]\nname = "fake"\ndependencies = ["grpcio>=1"]\n')
    monkeypatch.setattr(checker, "ROOT", tmp_path)
    package = checker.Package("services/fake", "nanofaas_fake", frozenset({"nanofaas_fake", "nanofaas"}))
    problems = checker.check(package, {"orjson": ["orjson"], "grpc": ["grpcio"]})
    assert any("imports our package 'nanofaas_runtime'" in problem for problem in problems)
    assert any("imports 'orjson'" in problem and "does not declare" in problem for problem in problems)
    assert any("declares 'grpcio', which its code never imports" in problem for problem in problems)
