"""`nanofaas fn init NAME`: a folder with handler.py, requirements.txt and function.yaml."""

from __future__ import annotations

import re
from pathlib import Path

from nanofaas_client.manifest import MANIFEST_NAME, dump_manifest
from nanofaas_client.models import FunctionSpec

NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9._-]{0,62}$")
RUNTIME_IMAGE = "nanofaas/python-runtime:latest"

HANDLER = '''"""The function {name}: `handle` gets the invocation and returns its output."""


def handle(request, context=None):
    # request["input"] is the JSON sent as {{"input": ...}}; print() lines go to `nanofaas logs {name}`.
    name = (request.get("input") or {{}}).get("name", "world")
    print(f"greeting {{name}}")
    return {{"message": f"Hello, {{name}}!"}}
'''

REQUIREMENTS = """# One requirement per line (pip syntax). When this file lists any, `nanofaas fn deploy`
# installs them into a virtualenv of this function's own (cached by their hash).
"""


def scaffold_spec(name: str) -> FunctionSpec:
    return {
        "name": name,
        "image": RUNTIME_IMAGE,
        "executionMode": "WARM",
        "timeoutMs": 30000,
        "concurrency": 4,
        "env": {},
    }


class ScaffoldError(ValueError):
    pass


def scaffold(name: str, parent: Path) -> Path:
    """Create `parent/name`; refuses an invalid name or a folder that exists and is not empty."""
    if NAME_RE.fullmatch(name) is None:
        raise ScaffoldError(
            f"'{name}' is not a function name: a letter, then up to 62 letters, digits, '.', '_' or '-'"
        )
    folder = parent / name
    if folder.exists() and any(folder.iterdir()):
        raise ScaffoldError(f"{folder} exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(HANDLER.format(name=name))
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    (folder / MANIFEST_NAME).write_text(dump_manifest(scaffold_spec(name)))
    return folder
