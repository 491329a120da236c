"""`make up`'s launcher: starts everything, deploys the example, and stops without orphans."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from .helpers import make_up


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
    async with make_up(tmp_path / "data") as (base, lines):
        curl = next(line for line in lines if "curl" in line)
        assert f"{base}/v1/functions/hello:invoke" in curl
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/v1/functions/hello:invoke", json={"input": {"name": "nanofaas"}}) as response,
        ):
            assert response.status == 200
            body = await response.json()
        assert body["output"] == {"message": "Hello, nanofaas!"}
        assert processes_of_function("hello"), "the warm example replica should be running"
        prefixes = {line.split("|", 1)[0].strip() for line in lines if "|" in line}
        assert {"registry", "scheduler", "gateway"} <= prefixes
    assert not processes_of_function("hello")
