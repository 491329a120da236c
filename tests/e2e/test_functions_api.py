"""Function CRUD through REST: every row and every error of the functions API."""

from __future__ import annotations

import aiohttp
import pytest

from .helpers import RUNTIME_IMAGE, python_spec, register


async def test_register_returns_summary_and_get_applies_defaults(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    summary = await register(http, {"name": fn_name, "image": RUNTIME_IMAGE})
    assert summary["name"] == fn_name
    assert summary["image"] == RUNTIME_IMAGE
    assert summary["concurrency"] == 4
    assert summary["executionMode"] == "JOB"
    assert summary["createdAt"].endswith("Z")
    async with http.get(f"/v1/functions/{fn_name}") as response:
        assert response.status == 200
        spec = await response.json()
    assert spec["timeoutMs"] == 30000
    assert spec["concurrency"] == 4
    assert spec["queueSize"] == 100
    assert spec["maxRetries"] == 3
    assert spec["executionMode"] == "JOB"
    assert spec["runtimeMode"] == "HTTP"
    assert spec["env"] == {}


async def test_duplicate_register_is_409(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, {"name": fn_name, "image": RUNTIME_IMAGE})
    async with http.post("/v1/functions", json={"name": fn_name, "image": RUNTIME_IMAGE}) as response:
        assert response.status == 409
        body = await response.json()
    assert body["error"]["code"]
    assert fn_name in body["error"]["message"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "1bad", "image": RUNTIME_IMAGE}, "name"),
        ({"name": "x" * 64, "image": RUNTIME_IMAGE}, "name"),
        ({"name": "ok"}, "image"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "timeoutMs": 0}, "timeoutMs"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "timeoutMs": 300001}, "timeoutMs"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "concurrency": 0}, "concurrency"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "queueSize": 0}, "queueSize"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "maxRetries": -1}, "maxRetries"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "executionMode": "SOMETIMES"}, "executionMode"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "runtimeMode": "SMOKE"}, "runtimeMode"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "executionMode": "ENDPOINT"}, "endpointUrl"),
        ({"name": "ok", "image": RUNTIME_IMAGE, "runtimeCommand": "python 'unclosed"}, "runtimeCommand"),
    ],
)
async def test_invalid_spec_is_rejected_naming_the_field(
    http: aiohttp.ClientSession, spec: dict[str, object], field: str
) -> None:
    async with http.post("/v1/functions", json=spec) as response:
        assert response.status in (400, 422)
        body = await response.json()
    assert field in body["error"]["message"]


async def test_non_json_body_is_a_clear_error(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/functions", data=b"{nope", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status in (400, 422)
        assert "error" in await response.json()


async def test_execution_mode_aliases(http: aiohttp.ClientSession, fn_name: str) -> None:
    cases = {
        "REMOTE": ({"executionMode": "REMOTE"}, "JOB"),
        "POOL": ({"executionMode": "POOL"}, "WARM"),
        "URL": ({"endpointUrl": "http://127.0.0.1:9/invoke"}, "ENDPOINT"),
        "POOLURL": ({"executionMode": "POOL", "endpointUrl": "http://127.0.0.1:9/invoke"}, "ENDPOINT"),
    }
    for suffix, (fields, expected) in cases.items():
        summary = await register(http, {"name": f"{fn_name}-{suffix}", "image": RUNTIME_IMAGE, **fields})
        assert summary["executionMode"] == expected, suffix


async def test_list_contains_registered_functions(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, {"name": fn_name, "image": RUNTIME_IMAGE})
    async with http.get("/v1/functions") as response:
        assert response.status == 200
        listed = await response.json()
    mine = [f for f in listed if f["name"] == fn_name]
    assert len(mine) == 1
    assert set(mine[0]) >= {"name", "image", "concurrency", "executionMode", "createdAt"}


async def test_get_missing_is_404(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/functions/does-not-exist") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"]


async def test_update_replaces_spec_and_validates(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    updated = python_spec(fn_name, "echo", concurrency=7, timeoutMs=1234, env={"GREETING": "hi"})
    async with http.put(f"/v1/functions/{fn_name}", json=updated) as response:
        assert response.status == 200
        spec = await response.json()
    assert spec["concurrency"] == 7
    assert spec["timeoutMs"] == 1234
    assert spec["env"]["GREETING"] == "hi"
    async with http.get(f"/v1/functions/{fn_name}") as response:
        assert (await response.json())["concurrency"] == 7
    async with http.put(f"/v1/functions/{fn_name}", json={**updated, "timeoutMs": 0}) as response:
        assert response.status in (400, 422)
    async with http.put(
        "/v1/functions/nope-missing", json={"name": "nope-missing", "image": "x"}
    ) as response:
        assert response.status == 404


async def test_update_takes_effect_for_next_invocation(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", env={"GREETING": "one"}))
    async with http.post(f"/v1/functions/{fn_name}:invoke", json={"input": 1}) as response:
        assert (await response.json())["output"]["env"]["GREETING"] == "one"
    async with http.put(
        f"/v1/functions/{fn_name}", json=python_spec(fn_name, "echo", env={"GREETING": "two"})
    ):
        pass
    async with http.post(f"/v1/functions/{fn_name}:invoke", json={"input": 1}) as response:
        assert (await response.json())["output"]["env"]["GREETING"] == "two"


async def test_delete_then_404_everywhere(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 404
    async with http.get(f"/v1/functions/{fn_name}") as response:
        assert response.status == 404
    async with http.post(f"/v1/functions/{fn_name}:invoke", json={"input": 1}) as response:
        assert response.status == 404
    async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 1}) as response:
        assert response.status == 404
