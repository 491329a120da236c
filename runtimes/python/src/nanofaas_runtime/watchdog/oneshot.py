"""STDIO and FILE process modes: run any command once per invocation and judge how it ended.

STDIO: the request on stdin, the output JSON on stdout. FILE: the request at
$INPUT_FILE, the output JSON at $OUTPUT_FILE (a private temp dir, removed after).
Exit 0 with valid JSON is SUCCESS; a non-zero exit is a FUNCTION_ERROR carrying
the stderr tail; death by a signal or a failure to start is a CRASH; the deadline
kills the whole process group and is a TIMEOUT.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nanofaas_runtime.outcome import CODE_START_FAILED, Outcome, crash, function_error, success, timeout
from nanofaas_runtime.protocol import NOT_VALID_JSON, is_valid_json, strip_json
from nanofaas_runtime.watchdog.process import (
    OutputTooLarge,
    StartError,
    StreamTail,
    cancel_task,
    describe_signal,
    read_bounded,
    signal_process_group,
    spawn,
    terminate,
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
) -> Outcome:
    """Run `argv` with `request` on stdin; its stdout is the output JSON."""
    try:
        process = await spawn(
            argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except StartError as exc:
        return crash(str(exc), CODE_START_FAILED)
    result = await _supervise(process, timeout, request, max_output_bytes)
    if isinstance(result, Outcome):
        return result
    if result.returncode != 0:
        return _failed_exit(result)
    return _json_output(result.stdout)


async def invoke_file(
    argv: Sequence[str],
    request: bytes,
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> Outcome:
    """Run `argv` with the request at $INPUT_FILE; the JSON it writes to $OUTPUT_FILE is the output."""
    workdir, input_path, output_path = await asyncio.to_thread(_prepare_workdir, request)
    try:
        try:
            process = await spawn(
                argv,
                env={**env, "INPUT_FILE": input_path, "OUTPUT_FILE": output_path},
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except StartError as exc:
            return crash(str(exc), CODE_START_FAILED)
        result = await _supervise(process, timeout, None, None)
        if isinstance(result, Outcome):
            return result
        if result.returncode != 0:
            return _failed_exit(result)
        return await asyncio.to_thread(_read_output_file, output_path, max_output_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _supervise(
    process: asyncio.subprocess.Process,
    timeout_seconds: float,
    stdin_data: bytes | None,
    stdout_limit: int | None,
) -> _Exit | Outcome:
    """Feed, drain and wait for the process within the deadline, killing its group on any early end."""
    stderr = StreamTail(process.stderr)
    feeder = asyncio.create_task(_feed(process.stdin, stdin_data)) if process.stdin is not None else None
    reader = (
        asyncio.create_task(read_bounded(process.stdout, stdout_limit))
        if process.stdout is not None and stdout_limit is not None
        else None
    )
    exited = asyncio.create_task(process.wait())
    try:
        async with asyncio.timeout(timeout_seconds):
            stdout = await _collect(process, exited, reader)
    except TimeoutError:
        await terminate(process)
        return timeout(f"timed out after {timeout_seconds:g}s")
    except OutputTooLarge as exc:
        await terminate(process)
        return function_error(str(exc))
    finally:
        if process.returncode is None:  # cancelled by our caller: leave nothing running
            await terminate(process)
        for task in (feeder, reader, exited):
            if task is not None:
                await cancel_task(task)
        await stderr.finish(_STDERR_DRAIN_SECONDS)
    return _Exit(exited.result(), stdout, stderr.text())


async def _collect(
    process: asyncio.subprocess.Process,
    exited: asyncio.Task[int],
    reader: asyncio.Task[bytes] | None,
) -> bytes:
    if reader is not None:
        done, _ = await asyncio.wait({exited, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            reader.result()  # raises OutputTooLarge the moment the limit is crossed
    await exited
    # Leftover children (same group) may still hold our pipes open; they go with their parent.
    signal_process_group(process.pid, signal.SIGKILL)
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
    workdir = tempfile.mkdtemp(prefix="nanofaas-file-")
    input_path = os.path.join(workdir, "input.json")
    with open(input_path, "wb") as file:
        file.write(request)
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
