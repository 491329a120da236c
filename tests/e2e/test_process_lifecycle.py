"""Function processes through the whole platform: concurrency bounds processes, timeouts kill trees.

Finding 5 (a WARM function with concurrency 1 had 5 handler processes after 8 timed-out
calls) and finding 4's setsid() escape, through REST with real processes. Pids come from
the handlers; leftovers are killed by pid even when a test fails.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from .helpers import enqueue, invoke, python_spec, register, wait_terminal
from .processes import kill_leftovers, processes_with_env, wait_for_pids, wait_gone


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_concurrency_holds_while_timed_out_replicas_drain(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    runs, alive = tmp_path / "runs", tmp_path / "alive"
    env = {"HANDLER_MODULE": "lifecycle", "RUNS_FILE": str(runs), "ALIVE_FILE": str(alive)}
    spec = python_spec(fn_name, "overlap", executionMode="WARM", concurrency=1, timeoutMs=1000, env=env)
    await register(http, spec)
    try:
        for _ in range(6):
            status, _, body = await invoke(http, fn_name, None)
            assert (status, body["error"]["code"]) == (408, "TIMEOUT"), body
        counts = [int(count) for count in _lines(alive)]
        assert len(counts) >= 2, "the handler should have run more than once"
        assert counts == [1] * len(counts), counts  # never two handler processes at once
    finally:
        kill_leftovers(int(pid) for pid in _lines(runs))
        async with http.delete(f"/v1/functions/{fn_name}") as response:
            assert response.status == 204


async def test_a_timeout_kills_the_handler_and_what_it_started_with_setsid(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    pid_file, count_file = tmp_path / "pids", tmp_path / "count"
    env = {"HANDLER_MODULE": "lifecycle", "PID_FILE": str(pid_file), "COUNT_FILE": str(count_file)}
    spec = python_spec(
        fn_name, "escape_and_block", executionMode="WARM", timeoutMs=1000, maxRetries=0, env=env
    )
    await register(http, spec)
    pids: list[int] = []
    try:
        execution_id = await enqueue(http, fn_name, 600)
        pids += await wait_for_pids(pid_file)
        assert (await wait_terminal(http, execution_id))["status"] == "timeout"
        await wait_gone(pids)
    finally:
        kill_leftovers(pids)
        async with http.delete(f"/v1/functions/{fn_name}") as response:
            assert response.status == 204
    await wait_gone(processes_with_env("FUNCTION_NAME", fn_name))
