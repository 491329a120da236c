"""The OpenAPI document matches the REST contract."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

# (path, method) -> (operationId, documented status codes)
CONTRACT: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("/v1/functions", "post"): ("registerFunction", {"201", "400", "409", "413", "415", "422"}),
    ("/v1/functions", "get"): ("listFunctions", {"200"}),
    ("/v1/functions/{name}", "get"): ("getFunction", {"200", "404"}),
    ("/v1/functions/{name}", "put"): ("updateFunction", {"200", "400", "404", "413", "415", "422"}),
    ("/v1/functions/{name}", "delete"): ("deleteFunction", {"204", "404"}),
    ("/v1/functions/{name}:invoke", "post"): (
        "invokeFunction",
        {"200", "400", "404", "408", "413", "415", "429", "502", "503"},
    ),
    ("/v1/functions/{name}:enqueue", "post"): (
        "enqueueFunction",
        {"202", "400", "404", "413", "415", "429", "503"},
    ),
    ("/v1/executions/{executionId}", "get"): ("getExecution", {"200", "404"}),
    ("/v1/executions", "get"): ("listExecutions", {"200", "400"}),
    ("/v1/functions/{name}/status", "get"): ("getFunctionStatus", {"200", "404", "503"}),
    ("/v1/functions/{name}/logs", "get"): ("getFunctionLogs", {"200", "400", "404", "429", "503"}),
    ("/v1/internal/executions/{executionId}:complete", "post"): (
        "completeExecution",
        {"204", "400", "401", "403", "404", "413", "415", "422"},
    ),
    ("/healthz", "get"): ("healthz", {"200"}),
    ("/readyz", "get"): ("readyz", {"200", "503"}),
}


# Every operation may meet the connection limits (URL, headers) before any route runs.
HEAD_LIMIT_CODES = {"414", "431"}


@pytest_asyncio.fixture(loop_scope="module")
async def document(gateway: Gateway) -> dict[str, Any]:
    async with gateway.session.get(gateway.url("/openapi.json")) as response:
        assert response.status == 200
        result: dict[str, Any] = await response.json()
    return result


def ref_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[-1]


async def test_every_contract_operation_is_documented(document: dict[str, Any]) -> None:
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == set(CONTRACT)
    for (path, method), (operation_id, codes) in CONTRACT.items():
        operation = document["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert set(operation["responses"]) == codes | HEAD_LIMIT_CODES, operation_id


async def test_success_and_error_schemas(document: dict[str, Any]) -> None:
    paths = document["paths"]

    def schema(path: str, method: str, code: str, media: str = "application/json") -> dict[str, Any]:
        result: dict[str, Any] = paths[path][method]["responses"][code]["content"][media]["schema"]
        return result

    assert ref_name(schema("/v1/functions", "post", "201")) == "FunctionSummary"
    assert ref_name(schema("/v1/functions", "get", "200")["items"]) == "FunctionSummary"
    assert ref_name(schema("/v1/functions/{name}", "get", "200")) == "FunctionSpecOut"
    assert ref_name(schema("/v1/functions/{name}:invoke", "post", "200")) == "InvocationResponse"
    assert (
        schema("/v1/functions/{name}:invoke", "post", "200", "application/octet-stream")["format"] == "binary"
    )
    assert ref_name(schema("/v1/functions/{name}:invoke", "post", "502")) == "InvocationResponse"
    assert ref_name(schema("/v1/functions/{name}:invoke", "post", "408")) == "InvocationResponse"
    assert ref_name(schema("/v1/functions/{name}:enqueue", "post", "202")) == "EnqueueResponse"
    assert ref_name(schema("/v1/executions/{executionId}", "get", "200")) == "ExecutionStatus"
    assert ref_name(schema("/v1/executions", "get", "200")["items"]) == "ExecutionStatus"
    assert ref_name(schema("/v1/functions/{name}/status", "get", "200")) == "FunctionStatus"
    assert ref_name(schema("/v1/functions/{name}/logs", "get", "200")) == "FunctionLogs"
    assert "text/event-stream" in paths["/v1/functions/{name}/logs"]["get"]["responses"]["200"]["content"]
    for path, method, code in [
        ("/v1/functions", "post", "409"),
        ("/v1/functions", "post", "422"),
        ("/v1/functions/{name}", "delete", "404"),
        ("/v1/functions/{name}:invoke", "post", "429"),
        ("/v1/functions/{name}:enqueue", "post", "413"),
        ("/readyz", "get", "503"),
    ]:
        assert ref_name(schema(path, method, code)) == "ErrorBody", (path, code)


async def test_headers_are_documented(document: dict[str, Any]) -> None:
    invoke = document["paths"]["/v1/functions/{name}:invoke"]["post"]
    enqueue = document["paths"]["/v1/functions/{name}:enqueue"]["post"]
    invoke_headers = {p["name"] for p in invoke["parameters"] if p["in"] == "header"}
    enqueue_headers = {p["name"] for p in enqueue["parameters"] if p["in"] == "header"}
    assert invoke_headers == {"Idempotency-Key", "X-Trace-Id", "traceparent", "X-Timeout-Ms"}
    assert enqueue_headers == {"Idempotency-Key", "X-Trace-Id", "traceparent", "X-Callback-Url"}
    assert "X-Execution-Id" in invoke["responses"]["200"]["headers"]
    assert "X-Execution-Id" in invoke["responses"]["502"]["headers"]
    assert "Retry-After" in invoke["responses"]["429"]["headers"]
    assert {"X-Execution-Id", "Location"} <= set(enqueue["responses"]["202"]["headers"])
    body = invoke["requestBody"]["content"]
    assert ref_name(body["application/json"]["schema"]) == "InvocationRequest"
    assert "application/octet-stream" in body


async def test_component_schemas_use_contract_field_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    spec = schemas["FunctionSpec"]
    assert set(spec["required"]) == {"name", "image"}
    assert set(spec["properties"]) == {
        "name",
        "image",
        "command",
        "runtimeCommand",
        "env",
        "resources",
        "timeoutMs",
        "concurrency",
        "queueSize",
        "maxRetries",
        "executionMode",
        "runtimeMode",
        "endpointUrl",
        "rateLimitPerSecond",
        # Kubernetes backend only
        "imagePullPolicy",
        "nodeSelector",
        "tolerations",
        "serviceAccountName",
        "secrets",
        "minReplicas",
        "maxReplicas",
        "targetInFlight",
        "scaleDownDelayMs",
    }
    assert set(schemas["Replicas"]["properties"]) == {"current", "ready", "desired", "min", "max"}
    assert set(schemas["FunctionStatus"]["properties"]) == {
        "name",
        "replicas",
        "inFlight",
        "queued",
        "oldestQueuedAgeMs",
    }
    assert set(schemas["Resources"]["properties"]) == {"cpu", "memory", "requests"}
    assert set(schemas["Toleration"]["properties"]) == {
        "key",
        "operator",
        "value",
        "effect",
        "tolerationSeconds",
    }
    assert schemas["SecretMount"]["required"] == ["name"]
    assert spec["properties"]["name"]["pattern"] == "^[a-zA-Z][a-zA-Z0-9._-]{0,62}$"
    assert set(schemas["FunctionSummary"]["properties"]) == {
        "name",
        "image",
        "concurrency",
        "executionMode",
        "createdAt",
    }
    assert {"executionId", "status", "output", "error"} <= set(schemas["InvocationResponse"]["properties"])
    assert {"input", "metadata"} == set(schemas["InvocationRequest"]["properties"])
    assert {
        "executionId",
        "functionName",
        "status",
        "attempts",
        "traceId",
        "enqueuedAt",
        "startedAt",
        "finishedAt",
        "output",
        "error",
    } <= set(schemas["ExecutionStatus"]["properties"])
    assert schemas["ErrorBody"]["properties"]["error"]["$ref"].endswith("/ErrorInfo")
    assert "HTTPValidationError" not in schemas
    assert "CompleteExecutionRequest" in schemas


async def test_docs_page_is_served(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url("/docs")) as response:
        assert response.status == 200
        assert "swagger" in (await response.text()).lower()
