"""Regenerate the Python gRPC stubs in proto/python from proto/.

Run with ``--check`` to fail (exit 1) when the committed stubs differ from
what the contracts generate, which is what CI does.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "proto" / "python" / "src"
PACKAGE = Path("nanofaas") / "v1"


def generate(out: Path) -> None:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs for every contract."""
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for pkg in (out / "nanofaas", out / PACKAGE):
        (pkg / "__init__.py").touch()
        (pkg / "py.typed").touch()


def generated_files(base: Path) -> list[Path]:
    return sorted(
        p.relative_to(base)
        for p in (base / "nanofaas").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    opts = parser.parse_args()
    if not opts.check:
        shutil.rmtree(OUT_DIR / "nanofaas", ignore_errors=True)
        generate(OUT_DIR)
        print(f"generated {len(generated_files(OUT_DIR))} files under {OUT_DIR}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(OUT_DIR)
        stale = [
            str(p)
            for p in sorted(set(want) | set(have))
            if p not in want or p not in have or not filecmp.cmp(fresh / p, OUT_DIR / p, shallow=False)
        ]
    if stale:
        print("generated protobuf code is out of sync with proto/; run `make proto`:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated protobuf code is in sync with proto/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
