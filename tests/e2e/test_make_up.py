"""`make up`'s launcher: starts everything, deploys the example, and stops without orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from .helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def processes_of_function(name: str) -> set[int]:
    """Pids whose environment says they run function `name` (function processes only)."""
    marker = f"FUNCTION_NAME={name}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


async def test_up_serves_the_example_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env.update(
        NANOFAAS_DATA_DIR=str(tmp_path / "data"),  # up.py keeps functions in sqlite there
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler := free_port()),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry := free_port()),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_ADDRESS=f"127.0.0.1:{scheduler}",
        NANOFAAS_REGISTRY_ADDRESS=f"127.0.0.1:{registry}",
    )
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "up.py"),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while raw := await up.stdout.readline():
                lines.append(raw.decode(errors="replace"))
                if "Press Ctrl-C to stop" in lines[-1]:
                    break
        assert "Press Ctrl-C to stop" in lines[-1], "make up did not come up:\n" + "".join(lines)
        curl = next(line for line in lines if "curl" in line)
        assert f"http://127.0.0.1:{port}/v1/functions/hello:invoke" in curl
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/functions/hello:invoke", json={"input": {"name": "nanofaas"}}
            ) as response,
        ):
            assert response.status == 200
            body = await response.json()
        assert body["output"] == {"message": "Hello, nanofaas!"}
        assert processes_of_function("hello"), "the warm example replica should be running"
        prefixes = {line.split("|", 1)[0].strip() for line in lines if "|" in line}
        assert {"registry", "scheduler", "gateway"} <= prefixes
    finally:
        up.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            remaining, _ = await up.communicate()
    assert up.returncode == 0, "".join(lines) + remaining.decode(errors="replace")
    assert not processes_of_function("hello")
