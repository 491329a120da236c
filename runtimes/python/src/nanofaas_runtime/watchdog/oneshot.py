"""STDIO and FILE process modes: run any command once per invocation and judge how it ended.

STDIO: the request on stdin, the output JSON on stdout. FILE: the request at
$INPUT_FILE, the output JSON at $OUTPUT_FILE (a private temp dir, removed after).
Exit 0 with valid JSON is SUCCESS; a non-zero exit is a FUNCTION_ERROR carrying
the stderr tail; death by a signal or a failure to start is a CRASH; the deadline
kills the whole process group and is a TIMEOUT. The command's stderr is kept as a
bounded tail for error messages and, with a `stderr_sink`, handed on line by line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nanofaas_runtime.outcome import CODE_START_FAILED, Outcome, crash, function_error, success
from nanofaas_runtime.outcome import timeout as timed_out
from nanofaas_runtime.protocol import NOT_VALID_JSON, is_valid_json, strip_json
from nanofaas_runtime.watchdog.process import (
    Child,
    OutputTooLarge,
    StartError,
    StreamTail,
    cancel_task,
    describe_signal,
    read_bounded,
    spawn,
)

DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
_STDERR_DRAIN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Exit:
    returncode: int
    stdout: bytes
    stderr_tail: str


async def invoke_stdio(
    argv: Sequence[str],
    request: bytes,
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    stderr_sink: Callable[[bytes], None] | None = None,
) -> Outcome:
    """Run `argv` with `request` on stdin; its stdout is the output JSON."""
    result = await _run_once(
        argv, env, cwd, timeout, stdin_data=request, stdout_limit=max_output_bytes, stderr_sink=stderr_sink
    )
    return result if isinstance(result, Outcome) else _json_output(result.stdout)


async def invoke_file(
    argv: Sequence[str],
    request: bytes,
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    stderr_sink: Callable[[bytes], None] | None = None,
) -> Outcome:
    """Run `argv` with the request at $INPUT_FILE; the JSON it writes to $OUTPUT_FILE is the output."""
    try:
        workdir, input_path, output_path = await asyncio.to_thread(_prepare_workdir, request)
    except OSError as exc:
        return crash(f"cannot prepare INPUT_FILE: {exc}", CODE_START_FAILED)
    try:
        file_env = {**env, "INPUT_FILE": input_path, "OUTPUT_FILE": output_path}
        result = await _run_once(
            argv, file_env, cwd, timeout, stdin_data=None, stdout_limit=None, stderr_sink=stderr_sink
        )
        if isinstance(result, Outcome):
            return result
        return await asyncio.to_thread(_read_output_file, output_path, max_output_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _run_once(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float,
    *,
    stdin_data: bytes | None,
    stdout_limit: int | None,
    stderr_sink: Callable[[bytes], None] | None,
) -> _Exit | Outcome:
    """Start, supervise and judge the exit; a clean exit is left to the mode to read its output."""
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        child = await spawn(
            argv,
            env=env,
            cwd=cwd,
            stdin=pipe if stdin_data is not None else devnull,
            stdout=pipe if stdout_limit is not None else devnull,
            stderr=pipe,
        )
    except StartError as exc:
        return crash(str(exc), CODE_START_FAILED)
    result = await _supervise(child, timeout, stdin_data, stdout_limit, stderr_sink)
    if isinstance(result, Outcome):
        return result
    if result.returncode != 0:
        return _failed_exit(result)
    return result


async def _supervise(
    child: Child,
    timeout_seconds: float,
    stdin_data: bytes | None,
    stdout_limit: int | None,
    stderr_sink: Callable[[bytes], None] | None,
) -> _Exit | Outcome:
    """Feed, drain and wait for the process within the deadline, killing its group on any early end."""
    process = child.process
    stderr = StreamTail(process.stderr, sink=stderr_sink)
    feeder = asyncio.create_task(_feed(process.stdin, stdin_data)) if process.stdin is not None else None
    reader = (
        asyncio.create_task(read_bounded(process.stdout, stdout_limit))
        if process.stdout is not None and stdout_limit is not None
        else None
    )
    try:
        async with asyncio.timeout(timeout_seconds):
            stdout = await _collect(child, reader)
    except TimeoutError:
        await child.kill_group()
        return timed_out(f"timed out after {timeout_seconds:g}s")
    except OutputTooLarge as exc:
        await child.kill_group()
        return function_error(str(exc))
    finally:
        if not child.exited.done():  # cancelled by our caller: leave nothing running
            await child.kill_group()
        for task in (feeder, reader):
            if task is not None:
                await cancel_task(task)
        await stderr.finish(_STDERR_DRAIN_SECONDS)
        child.close()
    return _Exit(child.exited.result(), stdout, stderr.text())


async def _collect(child: Child, reader: asyncio.Task[bytes] | None) -> bytes:
    if reader is not None:
        first: set[asyncio.Future[Any]] = {child.exited, reader}
        done, _ = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            reader.result()  # raises OutputTooLarge the moment the limit is crossed
    # Leftover children holding our pipes open were killed with their parent (see Child).
    await asyncio.shield(child.exited)
    return await reader if reader is not None else b""


async def _feed(stdin: asyncio.StreamWriter, data: bytes | None) -> None:
    """Write the request and close stdin; a child that never reads it is not an error."""
    try:
        if data:
            stdin.write(data)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


def _failed_exit(result: _Exit) -> Outcome:
    if result.returncode < 0:
        detail = f": {result.stderr_tail}" if result.stderr_tail else ""
        return crash(f"killed by {describe_signal(result.returncode)}{detail}")
    return function_error(result.stderr_tail or f"exited with code {result.returncode}")


def _json_output(raw: bytes) -> Outcome:
    output = strip_json(raw)
    if not output or not is_valid_json(output):
        return function_error(NOT_VALID_JSON)
    return success(output)


def _prepare_workdir(request: bytes) -> tuple[str, str, str]:
    workdir = tempfile.mkdtemp(prefix=f"nanofaas-file-{os.getpid()}-")
    input_path = os.path.join(workdir, "input.json")
    try:
        with open(input_path, "wb") as file:
            file.write(request)
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return workdir, input_path, os.path.join(workdir, "output.json")


def _read_output_file(path: str, limit: int) -> Outcome:
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size > limit:
                return function_error(f"output exceeds {limit} bytes")
            raw = file.read(limit + 1)
    except FileNotFoundError:
        return function_error(f"{NOT_VALID_JSON}: OUTPUT_FILE was not written")
    if len(raw) > limit:
        return function_error(f"output exceeds {limit} bytes")
    return _json_output(raw)
