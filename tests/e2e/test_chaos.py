"""Chaos: SIGKILL of a replica, of the scheduler, of the registry, and SIGHUP of `make up`.

After each, no process is left that nobody owns, and every accepted execution is
accounted for: it ended (a killed attempt is retried: at-least-once, docs/delivery.md),
or it is reported lost exactly as docs/delivery.md says (404 once a new scheduler runs).
Handlers start a grandchild in a session of its own, to prove that a setsid() escapes
nothing. Pids come from the handlers or from /proc; every leftover is killed by pid even
when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Platform, _wait_ready, start_platform, stop_platform
from .helpers import (
    UP_SCRIPT,
    enqueue,
    free_port,
    invoke,
    python_spec,
    read_until_up,
    register,
    up_env,
    wait_for_log_entry,
    wait_terminal,
)
from .processes import children_of, kill_leftovers, processes_with_env, wait_for_pids, wait_gone

WAIT_S = 30


def lifecycle_spec(name: str, handler: str, **fields: Any) -> dict[str, Any]:
    """A function running a handler from functions/lifecycle.py."""
    env = {"HANDLER_MODULE": "lifecycle", **fields.pop("env", {})}
    return python_spec(name, handler, env=env, **fields)


async def test_sigkill_of_a_replica_mid_handler_is_retried_and_leaves_nothing(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    pid_file, count_file = tmp_path / "pids", tmp_path / "count"
    spec = lifecycle_spec(
        fn_name,
        "escape_and_block",
        executionMode="WARM",
        maxRetries=1,
        env={"PID_FILE": str(pid_file), "COUNT_FILE": str(count_file)},
    )
    await register(http, spec)
    pids: list[int] = []
    try:
        execution_id = await enqueue(http, fn_name, 600)
        pids += await wait_for_pids(pid_file)
        replica, grandchild = pids
        os.kill(replica, signal.SIGKILL)
        # Accounted for: the attempt the kill interrupted is retried on a new replica, so the
        # handler ran twice (at-least-once).
        body = await wait_terminal(http, execution_id, timeout=60)
        assert body["status"] == "success", body
        assert body["output"]["runs"] == 2
        assert body["output"]["pid"] != replica
        pids += [body["output"]["pid"], body["output"]["grandchild"]]
        await wait_gone([replica, grandchild])  # re-parented to the scheduler, which killed it
        async with http.delete(f"/v1/functions/{fn_name}") as response:
            assert response.status == 204
        await wait_gone(pids)  # the second replica stops with what it started
    finally:
        kill_leftovers(pids)


def socket_folders(scheduler: int) -> list[Path]:
    """The runtime folders of the scheduler with pid `scheduler` (named for it)."""
    return list(Path(tempfile.gettempdir()).glob(f"nanofaas-{scheduler}-*"))


def restart(platform: Platform, service: str) -> None:
    """A new `service` process on the same port and settings; returns once the platform is ready."""
    with (platform.log_dir / f"{service}-restarted.log").open("wb") as log:
        platform.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"nanofaas_{service}"],
            env=platform.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait_ready(platform)


def sigkill(platform: Platform, service: str) -> None:
    platform.processes[service].send_signal(signal.SIGKILL)
    platform.processes[service].wait(timeout=WAIT_S)


async def test_sigkill_of_the_scheduler_takes_every_function_process_and_its_folder(tmp_path: Path) -> None:
    platform = await asyncio.to_thread(start_platform, tmp_path / "logs")
    pids: list[int] = []
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url) as http:
            await register(http, lifecycle_spec("warm", "escape", executionMode="WARM"))
            status, _, answer = await invoke(http, "warm", None)
            assert status == 200, answer
            pids += [answer["output"]["pid"], answer["output"]["grandchild"]]
            pid_file, count_file = tmp_path / "job.pids", tmp_path / "job.count"
            job = lifecycle_spec(
                "job",
                "escape_and_block",
                maxRetries=0,
                env={"PID_FILE": str(pid_file), "COUNT_FILE": str(count_file)},
            )
            await register(http, job)
            execution_id = await enqueue(http, "job", 600)
            pids += await wait_for_pids(pid_file)
            # Every process of both functions (the JOB standby included) must go.
            pids += sorted(
                processes_with_env("FUNCTION_NAME", "warm") | processes_with_env("FUNCTION_NAME", "job")
            )
            scheduler = platform.processes["scheduler"].pid
            folders = socket_folders(scheduler)
            assert folders, "the scheduler keeps its sockets in a folder named for its pid"

            await asyncio.to_thread(sigkill, platform, "scheduler")
            await wait_gone(pids)
            assert all(folder.exists() for folder in folders)  # nobody removed them yet

            await asyncio.to_thread(restart, platform, "scheduler")
            assert not any(folder.exists() for folder in folders)  # the new scheduler did
            # Accounted for: the accepted execution is lost with the scheduler's memory, and
            # says so (docs/delivery.md); the functions are not.
            async with http.get(f"/v1/executions/{execution_id}") as response:
                assert response.status == 404
            status, _, answer = await invoke(http, "warm", None)
            assert status == 200, answer
            pids += [answer["output"]["pid"], answer["output"]["grandchild"]]
    finally:
        kill_leftovers(pids)
        await asyncio.to_thread(stop_platform, platform)
    await wait_gone(pids)  # and a clean stop leaves nothing either


async def registry_gets(platform: Platform) -> float:
    """How many Get RPCs the registry served (its Prometheus counter)."""
    port = platform.env["NANOFAAS_REGISTRY_METRICS_PORT"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("registry_rpc_total{") and 'method="Get"' in line
    )


async def test_sigkill_of_the_registry_cached_specs_serve_and_the_restart_never_stalls(
    tmp_path: Path,
) -> None:
    """Finding 7, with the memory store: a restarted registry counts its revisions from 0 again."""
    platform = await asyncio.to_thread(start_platform, tmp_path / "logs", NANOFAAS_REGISTRY_STORE="memory")
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url) as http:
            await register(http, python_spec("cached", "echo", executionMode="WARM"))
            for greeting in ("a", "b", "c"):  # the gateway's mark: revision 4 of the first epoch
                spec = python_spec("cached", "echo", executionMode="WARM", env={"GREETING": greeting})
                async with http.put("/v1/functions/cached", json=spec) as response:
                    assert response.status == 200, await response.text()
            assert (await invoke(http, "cached", 1))[0] == 200

            await asyncio.to_thread(sigkill, platform, "registry")
            # Registry down: the cached spec still serves, sync and async (accounted for: ended).
            status, _, body = await invoke(http, "cached", 2)
            assert (status, body["output"]["env"]["GREETING"]) == (200, "c")
            execution_id = await enqueue(http, "cached", 3)
            assert (await wait_terminal(http, execution_id))["status"] == "success"

            await asyncio.to_thread(restart, platform, "registry")
            await wait_for_log_entry(
                lambda: platform.logs("scheduler"), lambda entry: entry.get("msg") == "registry restarted"
            )
            # The memory store forgot the function; registered again it is revision 1 of a
            # later epoch, below the gateway's old mark: no invocation waits for that mark.
            await register(http, python_spec("cached", "echo", executionMode="WARM"))
            before = await registry_gets(platform)
            for value in range(5):
                assert (await invoke(http, "cached", value))[0] == 200
            assert await registry_gets(platform) == before, "invocations fell back to asking the registry"
    finally:
        await asyncio.to_thread(stop_platform, platform)


async def start_up(data_dir: Path) -> tuple[asyncio.subprocess.Process, str, list[str]]:
    """scripts/up.py as a terminal would run it: leading its own process group."""
    port = free_port()
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        str(UP_SCRIPT),
        "--port",
        str(port),
        env=up_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        await read_until_up(up.stdout, lines)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        await up.wait()
        raise
    return up, f"http://127.0.0.1:{port}", lines


def services_of(up: asyncio.subprocess.Process) -> dict[str, int]:
    """The platform's service processes (children of the launcher), by service."""
    found = {}
    for pid, cmdline in children_of(up.pid).items():
        for name in ("registry", "scheduler", "gateway"):
            if f"nanofaas_{name}" in cmdline:
                found[name] = pid
    return found


async def up_with_a_replica(tmp_path: Path) -> tuple[asyncio.subprocess.Process, list[int], dict[str, int]]:
    """`make up` serving the example, its warm replica running; (launcher, every pid, services)."""
    up, base, _ = await start_up(tmp_path / "data")
    async with aiohttp.ClientSession(base_url=base) as http:
        status, _, body = await invoke(http, "hello", {"name": "chaos"})
        assert status == 200, body
    services = services_of(up)
    assert set(services) == {"registry", "scheduler", "gateway"}, services
    functions = processes_with_env("FUNCTION_NAME", "hello")
    assert functions, "the example's warm replica should be running"
    return up, [*services.values(), *functions], services


async def test_sighup_of_make_up_stops_every_service_and_function(tmp_path: Path) -> None:
    """The terminal closing sends SIGHUP to the foreground process group: all of it stops, cleanly."""
    up, pids, _ = await up_with_a_replica(tmp_path)
    try:
        os.killpg(up.pid, signal.SIGHUP)
        async with asyncio.timeout(60):
            output, _ = await up.communicate()
        assert up.returncode == 0, output.decode(errors="replace")
        await wait_gone(pids)
    finally:
        kill_leftovers([up.pid, *pids])


async def test_make_up_names_the_service_that_died_and_stops_the_others(tmp_path: Path) -> None:
    up, pids, services = await up_with_a_replica(tmp_path)
    try:
        os.kill(services["scheduler"], signal.SIGKILL)
        async with asyncio.timeout(60):
            output, _ = await up.communicate()
        text = output.decode(errors="replace")
        assert up.returncode == 1, text
        assert "make up: scheduler was killed by SIGKILL; stopping the others" in text
        await wait_gone(pids)
    finally:
        kill_leftovers([up.pid, *pids])


async def test_sigkill_of_the_launcher_still_stops_every_service_and_function(tmp_path: Path) -> None:
    """The launcher cannot clean up after kill -9: the services' parent-death signal (SIGTERM) does."""
    up, pids, _ = await up_with_a_replica(tmp_path)
    try:
        os.kill(up.pid, signal.SIGKILL)
        async with asyncio.timeout(60):
            await up.communicate()
        await wait_gone(pids)
    finally:
        kill_leftovers([up.pid, *pids])
