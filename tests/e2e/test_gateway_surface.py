"""The gateway's own surface: health, readiness, OpenAPI and JSON errors for unknown routes."""

from __future__ import annotations

import aiohttp


async def test_health_and_readiness(http: aiohttp.ClientSession) -> None:
    async with http.get("/healthz") as response:
        assert response.status == 200
    async with http.get("/readyz") as response:
        assert response.status == 200


async def test_openapi_matches_contract(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    paths = document["paths"]
    expected = {
        ("/v1/functions", "post"): ("registerFunction", "201"),
        ("/v1/functions", "get"): ("listFunctions", "200"),
        ("/v1/functions/{name}", "get"): ("getFunction", "200"),
        ("/v1/functions/{name}", "put"): ("updateFunction", "200"),
        ("/v1/functions/{name}", "delete"): ("deleteFunction", "204"),
        ("/v1/functions/{name}:invoke", "post"): ("invokeFunction", "200"),
        ("/v1/functions/{name}:enqueue", "post"): ("enqueueFunction", "202"),
        ("/v1/executions/{executionId}", "get"): ("getExecution", "200"),
        ("/v1/internal/executions/{executionId}:complete", "post"): ("completeExecution", "204"),
    }
    for (path, method), (operation_id, success) in expected.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        assert success in operation["responses"]
    assert {"404", "408", "413", "429", "502"} <= set(
        paths["/v1/functions/{name}:invoke"]["post"]["responses"]
    )
    async with http.get("/docs") as response:
        assert response.status == 200


async def test_unknown_route_is_json_404(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/nothing-here") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"]
