"""OpenAPI pieces the routes cannot express through FastAPI's signatures.

The invoke/enqueue/complete bodies are parsed by hand, so their schemas and
headers are declared here; FastAPI's automatic 422 entries are removed where
the contract has no 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from nanofaas_gateway.models import CompleteExecutionRequest, ErrorBody, InvocationRequest

_HAND_PARSED_MODELS: tuple[type[BaseModel], ...] = (InvocationRequest, CompleteExecutionRequest)
_REF_TEMPLATE = "#/components/schemas/{model}"
_STRING = {"type": "string"}
_BINARY = {"type": "string", "format": "binary"}

_ERROR_DESCRIPTIONS = {
    400: "Invalid request",
    401: "No credentials, or unknown ones (docs/security.md)",
    403: "Credentials that do not grant this (another attempt's completion token)",
    404: "Not found",
    408: "Timed out",
    409: "Already exists",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    422: "Validation error (the message names the field)",
    429: "Queue full; retry after Retry-After seconds",
    503: "A backend service is unavailable",
}
# Answered by the HTTP protocol itself (connection_limits.py), to any operation.
_HEAD_LIMIT_RESPONSES = {
    "414": "URL longer than NANOFAAS_MAX_URL_BYTES (URI_TOO_LONG)",
    "431": "Headers over NANOFAAS_MAX_HEADER_BYTES or NANOFAAS_MAX_HEADER_COUNT (HEADERS_TOO_LARGE)",
}
EXECUTION_ID_HEADER = {"X-Execution-Id": {"description": "The execution's id", "schema": _STRING}}
RETRY_HEADERS = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}},
    "X-Queue-Reject-Reason": {"description": "depth | estimated_wait | rate", "schema": _STRING},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting ErrorBody for each status code."""
    docs: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]}
        if code == 429:
            entry["headers"] = RETRY_HEADERS
        docs[code] = entry
    return docs


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or _STRING,
    }


_COMMON_HEADERS = [
    _header(
        "Idempotency-Key",
        "Repeated within the TTL, returns the same execution (NANOFAAS_MAX_IDEMPOTENCY_KEY_BYTES)",
        {"type": "string", "maxLength": 256},
    ),
    _header("X-Trace-Id", "Trace id stored on the execution and passed to the function"),
    _header("traceparent", "W3C trace context"),
]
_INVOCATION_BODY = {
    "required": False,
    "content": {
        "application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model="InvocationRequest")}},
        "application/octet-stream": {"schema": _BINARY},
    },
}
INVOKE_EXTRA: dict[str, Any] = {
    "requestBody": _INVOCATION_BODY,
    "parameters": [
        *_COMMON_HEADERS,
        _header(
            "X-Timeout-Ms",
            "Lowers the function's timeout: milliseconds, from 1 to the registry's largest timeoutMs "
            "(300000 today)",
            {"type": "integer", "minimum": 1, "maximum": 300_000},
        ),
    ],
}
ENQUEUE_EXTRA: dict[str, Any] = {
    "requestBody": _INVOCATION_BODY,
    "parameters": [
        *_COMMON_HEADERS,
        _header(
            "X-Callback-Url",
            "Receives the ExecutionStatus at the end: an http(s) URL the outbound policy allows",
            {"type": "string", "maxLength": 8192},
        ),
    ],
}
COMPLETE_EXTRA: dict[str, Any] = {
    "parameters": [
        _header(
            "X-Completion-Token",
            "The attempt's completion token, as its invocation carried it (docs/security.md); "
            "without it only an API-authenticated operator may complete (API auth on)",
        )
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model="CompleteExecutionRequest")}}
        },
    },
}
BINARY_OUTPUT = {"application/octet-stream": {"schema": _BINARY}}


def refine_openapi(schema: dict[str, Any], keep_422: set[str]) -> None:
    """Add the hand-parsed body schemas and drop 422s outside `keep_422` (operationIds)."""
    schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in _HAND_PARSED_MODELS:
        model_schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if operation.get("operationId") not in keep_422:
                operation.get("responses", {}).pop("422", None)
            # Any request may break a connection limit (docs/limits.md), before any route runs.
            for status, description in _HEAD_LIMIT_RESPONSES.items():
                operation.setdefault("responses", {})[status] = {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model="ErrorBody")}}
                    },
                }
    if "HTTPValidationError" not in str(schema.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
