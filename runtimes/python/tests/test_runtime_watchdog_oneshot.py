"""Watchdog STDIO/FILE modes with small real commands."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import orjson
import pytest

from nanofaas_runtime.outcome import Outcome, OutcomeKind
from nanofaas_runtime.watchdog.oneshot import invoke_file, invoke_stdio

from .support import child_env, pid_alive, python_command, wait_pid_gone

ENV = child_env()


async def test_stdio_success_echoes_stdin() -> None:
    code = """
        import json, sys
        request = json.load(sys.stdin)
        print(json.dumps({"got": request["input"]}), "  ")
    """
    outcome = await invoke_stdio(python_command(code), b'{"input": 41, "metadata": {}}', env=ENV, timeout=30)
    assert outcome == Outcome(OutcomeKind.SUCCESS, output=b'{"got": 41}', content_type="application/json")


async def test_stdio_env_is_exactly_the_given_mapping_and_cwd_is_used(tmp_path: Path) -> None:
    code = "import json, os; print(json.dumps([dict(os.environ), os.getcwd()]))"
    env = {"PATH": os.environ.get("PATH", ""), "ONLY_THIS": "1"}
    outcome = await invoke_stdio(python_command(code), b"", env=env, timeout=30, cwd=str(tmp_path))
    seen_env, cwd = orjson.loads(outcome.output)
    assert seen_env.get("ONLY_THIS") == "1"
    assert "HOME" not in seen_env
    assert set(seen_env) <= {"PATH", "ONLY_THIS", "LC_CTYPE"}  # Python may add LC_CTYPE (PEP 538)
    assert Path(cwd) == tmp_path


async def test_stdio_nonzero_exit_reports_stderr_tail() -> None:
    code = """
        import sys
        sys.stderr.write("x" * 10000 + "\\nthe real reason\\n")
        sys.exit(4)
    """
    outcome = await invoke_stdio(python_command(code), b"{}", env=ENV, timeout=30)
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.error_code == "FUNCTION_ERROR"
    assert outcome.message.endswith("the real reason")
    assert len(outcome.message.encode()) <= 4096


async def test_stdio_nonzero_exit_without_stderr() -> None:
    outcome = await invoke_stdio(python_command("raise SystemExit(7)"), b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.message) == (OutcomeKind.FUNCTION_ERROR, "exited with code 7")


@pytest.mark.parametrize("stdout", ["not json at all", "", '{"unterminated": '])
async def test_stdio_garbage_stdout_is_function_error(stdout: str) -> None:
    outcome = await invoke_stdio(python_command(f"print({stdout!r}, end='')"), b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.message) == (OutcomeKind.FUNCTION_ERROR, "output is not valid JSON")


async def test_stdio_huge_output_is_cut_off_and_the_process_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"""
        import os, sys
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        while True:
            sys.stdout.write("[" * 65536)
    """
    outcome = await invoke_stdio(python_command(code), b"{}", env=ENV, timeout=60, max_output_bytes=100_000)
    assert (outcome.kind, outcome.message) == (OutcomeKind.FUNCTION_ERROR, "output exceeds 100000 bytes")
    assert not pid_alive(int(pid_file.read_text()))


async def test_stdio_big_stderr_and_stdin_do_not_deadlock() -> None:
    code = """
        import sys
        data = sys.stdin.buffer.read()
        sys.stderr.write("e" * 5_000_000)
        sys.stdout.write(str(len(data)))
    """
    request = b'{"input": "' + b"a" * 3_000_000 + b'"}'
    outcome = await invoke_stdio(python_command(code), request, env=ENV, timeout=60)
    assert (outcome.kind, outcome.output) == (OutcomeKind.SUCCESS, str(len(request)).encode())


async def test_stdio_child_ignoring_stdin_is_fine() -> None:
    outcome = await invoke_stdio(python_command("print(1)"), b"x" * 1_000_000, env=ENV, timeout=30)
    assert (outcome.kind, outcome.output) == (OutcomeKind.SUCCESS, b"1")


async def test_stdio_killed_by_signal_is_a_crash() -> None:
    code = """
        import os, signal, sys
        sys.stderr.write("dying")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
    outcome = await invoke_stdio(python_command(code), b"{}", env=ENV, timeout=30)
    assert outcome.kind is OutcomeKind.CRASH
    assert outcome.error_code == "CRASH"
    assert outcome.message == "killed by SIGKILL: dying"


async def test_missing_executable_is_start_failed() -> None:
    outcome = await invoke_stdio(["/nonexistent/bin/fn"], b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.CRASH, "START_FAILED")
    assert "/nonexistent/bin/fn" in outcome.message


async def test_command_resolved_on_the_child_path_only(tmp_path: Path) -> None:
    outcome = await invoke_stdio(["python3"], b"{}", env={"PATH": str(tmp_path)}, timeout=30)
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.CRASH, "START_FAILED")


async def test_non_executable_file_is_start_failed(tmp_path: Path) -> None:
    script = tmp_path / "fn.sh"
    script.write_text("#!/bin/sh\necho 1\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    outcome = await invoke_file([str(script)], b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.CRASH, "START_FAILED")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A hanging command that spawned a grandchild: both die at the deadline."""
    child_pid, grandchild_pid = tmp_path / "child", tmp_path / "grandchild"
    code = f"""
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(grandchild_pid)!r}, "w").write(str(grandchild.pid))
        open({str(child_pid)!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    """
    outcome = await invoke_stdio(python_command(code), b"{}", env=ENV, timeout=2.0)
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.TIMEOUT, "TIMEOUT")
    assert outcome.message == "timed out after 2s"
    await wait_pid_gone(int(grandchild_pid.read_text()))
    assert not pid_alive(int(grandchild_pid.read_text()))
    assert not pid_alive(int(child_pid.read_text()))


async def test_cancelling_an_invocation_kills_the_process_group(tmp_path: Path) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)
    code = f"""
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open({str(started)!r}, "w") as fifo:
            fifo.write(f"{{os.getpid()}} {{grandchild.pid}}")
        time.sleep(600)
    """
    task = asyncio.create_task(invoke_stdio(python_command(code), b"{}", env=ENV, timeout=600))
    child, grandchild = map(int, (await asyncio.to_thread(started.read_text)).split())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_pid_gone(grandchild)
    assert not pid_alive(child)


async def test_leftover_background_children_are_killed_after_exit(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "grandchild"
    code = f"""
        import subprocess, sys
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(grandchild_pid)!r}, "w").write(str(grandchild.pid))
        print("[1]")
    """
    outcome = await invoke_stdio(python_command(code), b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.output) == (OutcomeKind.SUCCESS, b"[1]")
    await wait_pid_gone(int(grandchild_pid.read_text()))


async def test_file_mode_success_and_cleanup(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    code = f"""
        import json, os
        request = json.load(open(os.environ["INPUT_FILE"]))
        open({str(seen)!r}, "w").write(os.environ["INPUT_FILE"] + "\\n" + os.environ["OUTPUT_FILE"])
        json.dump({{"double": request["input"] * 2}}, open(os.environ["OUTPUT_FILE"], "w"))
        print("stdout is not the output")
    """
    outcome = await invoke_file(python_command(code), b'{"input": 21, "metadata": {}}', env=ENV, timeout=30)
    assert outcome == Outcome(OutcomeKind.SUCCESS, output=b'{"double": 42}')
    input_file, output_file = seen.read_text().splitlines()
    assert Path(input_file).parent == Path(output_file).parent
    assert not Path(input_file).parent.exists()  # the private temp dir is gone


async def test_file_mode_missing_output_file() -> None:
    outcome = await invoke_file(python_command("pass"), b"{}", env=ENV, timeout=30)
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.message.startswith("output is not valid JSON")


async def test_file_mode_invalid_json_output() -> None:
    code = "import os; open(os.environ['OUTPUT_FILE'], 'w').write('nope')"
    outcome = await invoke_file(python_command(code), b"{}", env=ENV, timeout=30)
    assert (outcome.kind, outcome.message) == (OutcomeKind.FUNCTION_ERROR, "output is not valid JSON")


async def test_file_mode_output_too_large() -> None:
    code = "import os; open(os.environ['OUTPUT_FILE'], 'w').write('1' * 5000)"
    outcome = await invoke_file(python_command(code), b"{}", env=ENV, timeout=30, max_output_bytes=1000)
    assert (outcome.kind, outcome.message) == (OutcomeKind.FUNCTION_ERROR, "output exceeds 1000 bytes")


async def test_file_mode_nonzero_exit_and_timeout() -> None:
    failed = await invoke_file(
        python_command("import sys; sys.exit('bad file input')"), b"{}", env=ENV, timeout=30
    )
    assert (failed.kind, failed.message) == (OutcomeKind.FUNCTION_ERROR, "bad file input")
    hung = await invoke_file(python_command("import time; time.sleep(600)"), b"{}", env=ENV, timeout=0.5)
    assert hung.kind is OutcomeKind.TIMEOUT
