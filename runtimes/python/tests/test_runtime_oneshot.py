"""The runtime's STDIO and FILE modes as real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from nanofaas_runtime.outcome import OutcomeKind
from nanofaas_runtime.watchdog.oneshot import invoke_file, invoke_stdio

from .support import handler_env, runtime_command

REQUEST = b'{"input": {"x": 1}, "metadata": {"m": "v"}}'


def run_stdio(
    handler_dir: Path, function: str, request: bytes, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        runtime_command("stdio"),
        env=handler_env(handler_dir, "funcs", function, **env),
        input=request,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_stdio_success_with_context_from_env(handler_dir: Path) -> None:
    result = run_stdio(
        handler_dir,
        "echo",
        REQUEST,
        EXECUTION_ID="e-1",
        TRACE_ID="t-1",
        FUNCTION_NAME="fn",
        INVOCATION_TIMEOUT_MS="30000",
    )
    assert result.returncode == 0, result.stderr
    output = orjson.loads(result.stdout)
    assert output["input"] == {"x": 1}
    assert output["metadata"] == {"m": "v"}
    context = output["context"]
    assert (context["execution_id"], context["trace_id"], context["function_name"]) == ("e-1", "t-1", "fn")
    assert context["metadata"] == {}
    assert isinstance(context["deadline"], float)


def test_stdio_mode_from_env_var(handler_dir: Path) -> None:
    result = subprocess.run(
        runtime_command(),
        env=handler_env(handler_dir, "funcs", "one_arg", NANOFAAS_RUNTIME_MODE="stdio"),
        input=REQUEST,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, b'{"only":{"x":1}}')


def test_stdio_async_handler(handler_dir: Path) -> None:
    result = run_stdio(handler_dir, "async_echo", REQUEST)
    assert result.returncode == 0
    assert orjson.loads(result.stdout)["async"] == {"x": 1}


def test_stdio_handler_prints_do_not_corrupt_the_output(handler_dir: Path) -> None:
    result = run_stdio(handler_dir, "printing", REQUEST)
    assert (result.returncode, result.stdout) == (0, b'{"printed":true}')
    assert b"chatter on stdout" in result.stderr
    assert b"chatter from a subprocess" in result.stderr


def test_stdio_handler_exception_exits_1_with_message(handler_dir: Path) -> None:
    result = run_stdio(handler_dir, "fail", REQUEST)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.strip().endswith(b"boom: {'x': 1}")


def test_stdio_bytes_output_is_an_error(handler_dir: Path) -> None:
    result = run_stdio(handler_dir, "bytes_out", REQUEST)
    assert result.returncode == 1
    assert b"STDIO/FILE mode outputs a JSON value" in result.stderr


@pytest.mark.parametrize(
    ("request_body", "message"),
    [(b"{oops", b"request is not valid JSON"), (b'{"input": 1, "metadata": []}', b"metadata: must be")],
)
def test_stdio_bad_request_exits_2(handler_dir: Path, request_body: bytes, message: bytes) -> None:
    result = run_stdio(handler_dir, "echo", request_body)
    assert result.returncode == 2
    assert message in result.stderr


def test_file_mode(handler_dir: Path, tmp_path: Path) -> None:
    input_file, output_file = tmp_path / "in.json", tmp_path / "out.json"
    input_file.write_bytes(REQUEST)
    result = subprocess.run(
        [*runtime_command(), "--mode=file"],
        env=handler_env(
            handler_dir, "funcs", "one_arg", INPUT_FILE=str(input_file), OUTPUT_FILE=str(output_file)
        ),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output_file.read_bytes() == b'{"only":{"x":1}}'


def test_file_mode_without_input_file_exits_2(handler_dir: Path) -> None:
    result = subprocess.run(
        runtime_command("file"),
        env=handler_env(handler_dir, "funcs", "echo"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"INPUT_FILE is not set" in result.stderr


async def test_runtime_under_the_watchdog_stdio(handler_dir: Path) -> None:
    outcome = await invoke_stdio(
        runtime_command("stdio"), REQUEST, env=handler_env(handler_dir, "funcs", "one_arg"), timeout=60
    )
    assert (outcome.kind, outcome.output) == (OutcomeKind.SUCCESS, b'{"only":{"x":1}}')
    failed = await invoke_stdio(
        runtime_command("stdio"), REQUEST, env=handler_env(handler_dir, "funcs", "fail"), timeout=60
    )
    assert (failed.kind, failed.message) == (OutcomeKind.FUNCTION_ERROR, "boom: {'x': 1}")


async def test_runtime_under_the_watchdog_file(handler_dir: Path) -> None:
    outcome = await invoke_file(
        runtime_command("file"), REQUEST, env=handler_env(handler_dir, "funcs", "echo"), timeout=60
    )
    assert outcome.kind is OutcomeKind.SUCCESS
    assert orjson.loads(outcome.output)["input"] == {"x": 1}
