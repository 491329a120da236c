"""The e2e suite's own modules (tests/e2e), importable here without making tests/ a package.

tests/e2e modules import each other relatively (`from .helpers import ...`), so they are
loaded as the submodules of a synthetic package `nanofaas_e2e` whose path is tests/e2e.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
_PACKAGE = "nanofaas_e2e"


def e2e_module(name: str) -> Any:
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(E2E_DIR)]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.{name}")
