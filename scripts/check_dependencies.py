"""Check that dependencies follow the architecture; exit 1 naming every violation.

* A service imports none of our packages but its own and the contracts
  (`nanofaas.v1`); the runtime imports only itself (the function side is
  started by the scheduler, never imported, and needs no contracts).
* A package's declared runtime dependencies are exactly what its code
  imports: nothing imported is undeclared, nothing declared goes unused
  (except the few that are used without an import statement, listed below
  with the reason).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "nanofaas",
    "nanofaas_gateway",
    "nanofaas_scheduler",
    "nanofaas_registry",
    "nanofaas_runtime",
    "nanofaas_client",
}


@dataclass(frozen=True)
class Package:
    path: str
    module: str
    may_import: frozenset[str]


PACKAGES = (
    Package("services/gateway", "nanofaas_gateway", frozenset({"nanofaas_gateway", "nanofaas"})),
    Package("services/scheduler", "nanofaas_scheduler", frozenset({"nanofaas_scheduler", "nanofaas"})),
    Package("services/registry", "nanofaas_registry", frozenset({"nanofaas_registry", "nanofaas"})),
    Package("runtimes/python", "nanofaas_runtime", frozenset({"nanofaas_runtime"})),
    Package("clients/python", "nanofaas_client", frozenset({"nanofaas_client", "nanofaas"})),
)
# Declared, used, but never named in an import statement.
USED_WITHOUT_IMPORT = {
    "httptools": "uvicorn's HTTP parser, chosen by name (http='httptools')",
    "uvloop": "uvicorn's event loop, chosen by name (loop='uvloop')",
    "nanofaas-proto": "the contracts, imported as nanofaas.v1",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(source_dir: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted(source_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def declared(package: Package) -> set[str]:
    project = tomllib.loads((ROOT / package.path / "pyproject.toml").read_text())["project"]
    return {_normalise(re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def check(package: Package, distributions: dict[str, list[str]]) -> list[str]:
    problems: list[str] = []
    imports = imported_modules(ROOT / package.path / "src")
    wanted = declared(package)
    used: set[str] = set()
    for module, files in sorted(imports.items()):
        where = ", ".join(sorted(files)[:3])
        if module in OURS:
            if module not in package.may_import:
                problems.append(f"{package.path}: imports our package {module!r} ({where})")
            continue
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        owners = {_normalise(name) for name in distributions.get(module, [])}
        if not owners:
            problems.append(f"{package.path}: imports {module!r}, which no installed distribution provides")
        elif not owners & wanted:
            problems.append(
                f"{package.path}: imports {module!r} ({where}) but does not declare {sorted(owners)}"
            )
        used |= owners
    for name in sorted(wanted - used - set(USED_WITHOUT_IMPORT)):
        problems.append(f"{package.path}: declares {name!r}, which its code never imports")
    return problems


def main() -> int:
    distributions = {
        module: list(names) for module, names in importlib.metadata.packages_distributions().items()
    }
    problems = [problem for package in PACKAGES for problem in check(package, distributions)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"dependencies follow the architecture ({len(PACKAGES)} packages checked)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
