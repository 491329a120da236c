"""The `nanofaas` CLI through click's runner against the real platform: the user's path and its errors."""

from __future__ import annotations

import importlib.util
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from nanofaas_client import Client
from nanofaas_client.cli import exit_codes
from nanofaas_client.cli.main import cli

from .conftest import Platform
from .helpers import free_port, python_spec
from .test_client_introspection import gate_spec

HANDLER = """
import six


def handle(request, context=None):
    name = (request.get("input") or {}).get("name", "world")
    print(f"greeting {name} with six {six.__version__}")
    return {"message": f"Hello, {name}!", "six": six.__version__}
"""


def nf(platform: Platform, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--url", platform.base_url, *args], input=stdin, catch_exceptions=False)


def lines_until(platform: Platform, name: str, text: str, timeout_s: float = 15) -> str:
    """`nanofaas logs NAME` once `text` is among the lines (they arrive over a pipe: a bounded poll)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = nf(platform, "logs", name)
        assert result.exit_code == 0, result.output
        if text in result.stdout or time.monotonic() > deadline:
            return result.stdout
        time.sleep(0.05)


def test_init_deploy_invoke_logs_rm(
    platform: Platform, fn_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOFAAS_CACHE_DIR", str(tmp_path / "cache"))
    # The package must come from the function's own virtualenv, not from the platform's.
    assert importlib.util.find_spec("six") is None
    created = nf(platform, "fn", "init", fn_name, "--dir", str(tmp_path))
    assert created.exit_code == 0, created.output
    folder = tmp_path / fn_name
    (folder / "handler.py").write_text(HANDLER)
    (folder / "requirements.txt").write_text("six\n")

    deployed = nf(platform, "fn", "deploy", str(folder))
    assert deployed.exit_code == 0, deployed.output
    assert deployed.stdout == f"NAME    {fn_name}\nRESULT  created\n"
    assert "built virtualenv" in deployed.stderr
    assert "installing six" in deployed.stderr

    invoked = nf(platform, "invoke", fn_name, "-d", '{"name": "cli"}')
    assert invoked.exit_code == 0, invoked.output
    output = json.loads(invoked.stdout)
    assert output["message"] == "Hello, cli!"
    assert output["six"].startswith("1.")

    logs = lines_until(platform, fn_name, "greeting cli")
    (line,) = [entry for entry in logs.splitlines() if "greeting cli" in entry]
    assert line.split()[1] == "stdout"

    status = nf(platform, "status", fn_name)
    assert status.stdout == (
        f"NAME           {fn_name}\n"
        "REPLICAS       1 (ready 1, desired 1, min 1, max 4)\n"  # max: concurrency 4
        "IN-FLIGHT      0\n"
        "QUEUED         0\n"
        "OLDEST-QUEUED  0 ms\n"
    )
    listing = json.loads(nf(platform, "-o", "json", "exec", "ls", "--function", fn_name).stdout)
    assert [e["status"] for e in listing] == ["success"]

    waited = nf(platform, "invoke", fn_name, "--async", "--wait", "-d", "-", stdin='{"name": "queue"}')
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["message"] == "Hello, queue!"
    execution_id = nf(platform, "invoke", fn_name, "--async").stdout.strip()
    ended = nf(platform, "exec", "wait", execution_id)
    assert ended.exit_code == 0, ended.output
    assert "STATUS    success" in ended.stdout

    again = nf(platform, "fn", "deploy", str(folder / "function.yaml"))
    assert again.exit_code == 0, again.output
    assert again.stdout.endswith("RESULT  updated\n")
    assert "reusing virtualenv" in again.stderr

    removed = nf(platform, "fn", "rm", fn_name)
    assert removed.stdout == f"NAME    {fn_name}\nRESULT  deleted\n"
    assert nf(platform, "fn", "get", fn_name).exit_code == exit_codes.NOT_FOUND


def test_yaml_and_json_outputs(platform: Platform, fn_name: str) -> None:
    with Client(platform.base_url) as client:
        client.register(python_spec(fn_name, "echo"))
    got = nf(platform, "fn", "get", fn_name)
    assert got.stdout.startswith(f"name: {fn_name}\nimage: nanofaas/python-runtime:latest\n")
    as_json = json.loads(nf(platform, "-o", "json", "fn", "get", fn_name).stdout)
    assert as_json["queueSize"] == 100
    as_yaml = nf(platform, "-o", "yaml", "status", fn_name).stdout
    assert as_yaml.startswith(f"name: {fn_name}\nreplicas:\n  current: 0\n")
    invoked = json.loads(nf(platform, "-o", "json", "invoke", fn_name, "-d", "[1]").stdout)
    assert (invoked["status"], invoked["output"]["input"]) == ("success", [1])


def test_input_from_a_file_and_extra_headers(platform: Platform, fn_name: str, tmp_path: Path) -> None:
    with Client(platform.base_url) as client:
        client.register(python_spec(fn_name, "echo"))
    (tmp_path / "input.json").write_text('{"from": "file"}')
    invoked = nf(
        platform, "invoke", fn_name, "-d", f"@{tmp_path / 'input.json'}", "-H", "X-Trace-Id: cli-trace-1"
    )
    assert invoked.exit_code == 0, invoked.output
    output = json.loads(invoked.stdout)
    assert (output["input"], output["traceId"]) == ({"from": "file"}, "cli-trace-1")
    bad = nf(platform, "invoke", fn_name, "-H", "no separator")
    assert bad.exit_code == exit_codes.USAGE


def test_error_cases(platform: Platform, fn_name: str, tmp_path: Path) -> None:
    unreachable = CliRunner().invoke(cli, ["--url", f"http://127.0.0.1:{free_port()}", "fn", "ls"])
    assert unreachable.exit_code == exit_codes.PLATFORM_UNREACHABLE
    assert "make up" in unreachable.stderr

    with Client(platform.base_url) as client:
        client.register(python_spec(fn_name, "fail"))
    typo = nf(platform, "invoke", fn_name[:-1])
    assert typo.exit_code == exit_codes.NOT_FOUND
    assert f"did you mean: {fn_name}" in typo.stderr

    failed = nf(platform, "invoke", fn_name, "-d", '"x"')
    assert failed.exit_code == exit_codes.EXECUTION_FAILED
    assert "failed: FUNCTION_ERROR: " in failed.stderr

    unknown = nf(platform, "exec", "get", "no-such-execution")
    assert unknown.exit_code == exit_codes.NOT_FOUND
    assert "nanofaas exec ls" in unknown.stderr

    for args in (["invoke", fn_name, "-d", "not json"], ["invoke", fn_name, "-d", "@/no/such/file"]):
        bad = nf(platform, *args)
        assert bad.exit_code == exit_codes.USAGE, args

    manifest = tmp_path / "function.yaml"
    manifest.write_text(f"name: {fn_name}-m\nimage: nanofaas/python-runtime\ntimeoutMS: 5\n")
    assert nf(platform, "fn", "deploy", str(manifest)).exit_code == exit_codes.USAGE
    manifest.write_text(f"name: {fn_name}-m\nimage: nanofaas/python-runtime\nconcurrency: 0\n")
    refused = nf(platform, "fn", "deploy", str(manifest))
    assert refused.exit_code == exit_codes.REFUSED
    assert "concurrency: must be between 1 and 10000" in refused.stderr


def test_rate_limited_and_wait_timeout(platform: Platform, fn_name: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with Client(platform.base_url) as client:
        client.register(gate_spec(fn_name, tmp_path, concurrency=1, queueSize=1))
        running = client.enqueue(fn_name, str(release)).execution_id
        deadline = time.monotonic() + 30
        while client.get_execution(running).status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        client.enqueue(fn_name, str(release))
    busy = nf(platform, "invoke", fn_name, "--async", "-d", json.dumps(str(release)))
    assert busy.exit_code == exit_codes.RATE_LIMITED
    assert "retry after" in busy.stderr and "reason: depth" in busy.stderr
    gave_up = nf(platform, "exec", "wait", running, "--timeout", "0.2")
    assert gave_up.exit_code == exit_codes.TIMED_OUT
    release.touch()
    assert nf(platform, "exec", "wait", running).exit_code == 0


def test_logs_follow_prints_new_lines_until_interrupted(platform: Platform, fn_name: str) -> None:
    """`nanofaas logs NAME -f` as a real process: it streams, and Ctrl-C ends it cleanly (exit 0)."""
    with Client(platform.base_url) as client:
        client.register(python_spec(fn_name, "chatty", executionMode="WARM"))
        # As from a terminal: a run started in the background (`cmd &`) has SIGINT ignored, which
        # a child inherits (and Python then leaves ignored); a handler here becomes SIG_DFL there.
        ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nanofaas_client.cli.main",
                "--url",
                platform.base_url,
                "logs",
                fn_name,
                "-f",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        signal.signal(signal.SIGINT, ignored)
        try:
            result = client.invoke(fn_name, "followed")
            stdout = follower.stdout
            assert stdout is not None
            lines: queue.Queue[str] = queue.Queue()

            def pump() -> None:
                for text in stdout:
                    lines.put(text)

            threading.Thread(target=pump, daemon=True).start()
            deadline = time.monotonic() + 15
            seen = ""
            while "chatty says followed" not in seen:
                seen = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert result.execution_id[:12] in seen
            follower.send_signal(signal.SIGINT)
            assert follower.wait(timeout=10) == 0
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
