"""Handler loading and calling, in process (the real-process checks live with each mode)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nanofaas_runtime.handler import (
    EXIT_HANDLER_LOAD_FAILED,
    Context,
    HandlerLoadError,
    build_request,
    encode_output,
    load_handler,
)

from .support import child_env, runtime_command

ModuleWriter = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleWriter]:
    """Write a uniquely named module on sys.path and return its name (removed from sys.modules after)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"handler_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


CONTEXT = Context(execution_id="e-1", trace_id="t-1", function_name="fn", deadline=123.5, metadata={"k": "v"})


def test_sync_handler_gets_request_and_context(write_module: ModuleWriter) -> None:
    name = write_module(
        "def handle(request, context=None):\n"
        "    return [request['input'], request['metadata'], context.execution_id, context.deadline]\n"
    )
    handler = load_handler(name)
    assert handler.name == f"{name}.handle"
    assert not handler.is_async
    result = handler.call(build_request({"a": 1}, {"m": "1"}), CONTEXT)
    assert result == [{"a": 1}, {"m": "1"}, "e-1", 123.5]


def test_async_handler_is_detected_and_awaitable(write_module: ModuleWriter) -> None:
    name = write_module(
        "async def handle(request, context=None):\n    return (request['input'], context.trace_id)\n"
    )
    handler = load_handler(name)
    assert handler.is_async
    assert asyncio.run(handler.call(build_request(7, {}), CONTEXT)) == (7, "t-1")


def test_one_argument_handler_gets_only_the_request(write_module: ModuleWriter) -> None:
    name = write_module("def handle(request):\n    return request['input'] * 2\n")
    handler = load_handler(name)
    assert handler.context_mode == "none"
    assert handler.call(build_request(21, {}), CONTEXT) == 42


def test_keyword_only_context(write_module: ModuleWriter) -> None:
    name = write_module("def handle(request, *, context):\n    return context.function_name\n")
    assert load_handler(name).call(build_request(None, {}), CONTEXT) == "fn"


def test_async_callable_object(write_module: ModuleWriter) -> None:
    name = write_module(
        "class Handler:\n"
        "    async def __call__(self, request, context=None):\n"
        "        return request['input']\n"
        "handle = Handler()\n"
    )
    handler = load_handler(name)
    assert handler.is_async
    assert asyncio.run(handler.call(build_request("x", {}), CONTEXT)) == "x"


def test_custom_function_name_from_env(write_module: ModuleWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    name = write_module("def main(request):\n    return 'main'\n")
    monkeypatch.setenv("HANDLER_MODULE", name)
    monkeypatch.setenv("HANDLER_FUNCTION", "main")
    assert load_handler().call(build_request(None, {}), CONTEXT) == "main"


def test_missing_module() -> None:
    with pytest.raises(HandlerLoadError, match="module 'no_such_module_xyz' not found on PYTHONPATH"):
        load_handler("no_such_module_xyz")


def test_missing_function(write_module: ModuleWriter) -> None:
    name = write_module("def other(request):\n    return 1\n")
    with pytest.raises(HandlerLoadError, match=f"module '{name}' has no attribute 'handle'"):
        load_handler(name)


def test_module_failing_at_import(write_module: ModuleWriter) -> None:
    name = write_module("import json\nraise RuntimeError('kaput')\n")
    with pytest.raises(HandlerLoadError, match="RuntimeError: kaput"):
        load_handler(name)


def test_missing_dependency_of_module_names_the_dependency(write_module: ModuleWriter) -> None:
    name = write_module("import not_installed_dep_abc\n")
    with pytest.raises(HandlerLoadError, match="No module named 'not_installed_dep_abc'"):
        load_handler(name)


def test_handler_without_parameters_is_rejected(write_module: ModuleWriter) -> None:
    name = write_module("def handle():\n    return 1\n")
    with pytest.raises(HandlerLoadError, match="must accept the request"):
        load_handler(name)


def test_encode_output() -> None:
    assert encode_output({"a": [1, None]}) == (b'{"a":[1,null]}', "application/json")
    assert encode_output(b"\x00") == (b"\x00", "application/octet-stream")
    assert encode_output(bytearray(b"ab")) == (b"ab", "application/octet-stream")
    assert encode_output(None) == (b"null", "application/json")
    assert encode_output(10**30) == (b"1" + b"0" * 30, "application/json")
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_output({1, 2})


def test_context_remaining_seconds() -> None:
    assert Context().remaining_seconds() is None
    assert Context(deadline=1.0).remaining_seconds() == 0.0


@pytest.mark.parametrize("mode", ["http", "stdio", "file"])
def test_missing_module_fails_start_with_exit_code_3(tmp_path: Path, mode: str) -> None:
    """A real runtime process exits 3 with a clear message instead of hanging."""
    result = subprocess.run(
        runtime_command(mode),
        env=child_env(PYTHONPATH=str(tmp_path), HANDLER_MODULE="nowhere_to_be_found", PORT="0"),
        input=b"{}",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_HANDLER_LOAD_FAILED == 3
    assert b"cannot load handler: module 'nowhere_to_be_found' not found on PYTHONPATH" in result.stderr


def test_missing_function_fails_start_with_exit_code_3(handler_dir: Path) -> None:
    result = subprocess.run(
        runtime_command(),
        env=child_env(PYTHONPATH=str(handler_dir), HANDLER_MODULE="funcs", HANDLER_FUNCTION="nope", PORT="0"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert b"module 'funcs' has no attribute 'nope'" in result.stderr


def test_unknown_mode_is_a_usage_error() -> None:
    result = subprocess.run(runtime_command("bogus"), capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"unknown mode 'bogus'" in result.stderr
