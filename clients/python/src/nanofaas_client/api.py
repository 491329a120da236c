"""The REST API as data: each operation is a `Call` (what to send, how to read the answer).

Both clients (sync `Client`, asyncio `AsyncClient`) only send Calls and hand the
answer to `Call.parse`, so the mapping between Python and the REST contract
exists once, here, and the two clients cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from nanofaas_client.errors import NanofaasError, PlatformUnreachable, WaitTimedOut, error_for
from nanofaas_client.models import (
    Enqueued,
    Execution,
    FunctionSpec,
    FunctionStatus,
    FunctionSummary,
    Invocation,
    LogLine,
)
from nanofaas_client.policies import retry_after_s
from nanofaas_client.tracing import current_traceparent

T = TypeVar("T")
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class InvocationOptions:
    """What an invocation may carry besides its input (the REST headers of invoke and enqueue)."""

    idempotency_key: str = ""
    traceparent: str = ""
    trace_id: str = ""
    # Sync only: lowers the function's timeout (X-Timeout-Ms).
    timeout_ms: int | None = None
    # Async only: where the platform POSTs the ExecutionStatus at the end.
    callback_url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def as_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        traceparent = self.traceparent or current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        if self.trace_id:
            headers["X-Trace-Id"] = self.trace_id
        if self.timeout_ms is not None:
            headers["X-Timeout-Ms"] = str(self.timeout_ms)
        if self.callback_url:
            headers["X-Callback-Url"] = self.callback_url
        return headers


def _segment(name: str) -> str:
    return quote(name, safe="")


# -- reading answers ---------------------------------------------------------------------


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_from(response: httpx.Response) -> NanofaasError:
    """The exception for a non-2xx answer: the contract's error body, or a failed invocation's."""
    body = _body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    else:
        code, message = "", response.text[:200] or response.reason_phrase
    execution_id = str(body.get("executionId", "")) if isinstance(body, dict) else ""
    return error_for(
        code,
        message,
        status=response.status_code,
        execution_id=execution_id or response.headers.get("x-execution-id", ""),
        retry_after_s=retry_after_s(response),
        reason=response.headers.get("x-queue-reject-reason", ""),
        body=body,
    )


def unreachable(base_url: str, exc: Exception) -> PlatformUnreachable:
    return PlatformUnreachable(f"cannot reach the platform at {base_url}: {exc or type(exc).__name__}")


def _ok(response: httpx.Response) -> Any:
    if not response.is_success:
        raise error_from(response)
    return _body(response)


def _none(response: httpx.Response) -> None:
    _ok(response)


def _spec(response: httpx.Response) -> FunctionSpec:
    return dict(_ok(response))


def _summary(response: httpx.Response) -> FunctionSummary:
    return FunctionSummary.from_json(_ok(response))


def _summaries(response: httpx.Response) -> list[FunctionSummary]:
    return [FunctionSummary.from_json(item) for item in _ok(response)]


def _execution(response: httpx.Response) -> Execution:
    return Execution.from_json(_ok(response))


def _executions(response: httpx.Response) -> list[Execution]:
    return [Execution.from_json(item) for item in _ok(response)]


def _status(response: httpx.Response) -> FunctionStatus:
    return FunctionStatus.from_json(_ok(response))


def _logs(response: httpx.Response) -> list[LogLine]:
    return [LogLine.from_json(item) for item in _ok(response)["lines"]]


def _invocation(response: httpx.Response) -> Invocation:
    if not response.is_success:
        raise error_from(response)
    execution_id = response.headers.get("x-execution-id", "")
    if response.headers.get("content-type", JSON).split(";")[0].strip() == OCTET_STREAM:
        return Invocation(execution_id, "success", response.content)
    body = _body(response)
    if not isinstance(body, dict):
        body = {"status": "success", "output": body}
    return Invocation(
        str(body.get("executionId", execution_id)), str(body.get("status", "success")), body.get("output")
    )


def _enqueued(response: httpx.Response) -> Enqueued:
    body = _ok(response)
    return Enqueued(str(body["executionId"]), str(body["status"]))


def _ready(response: httpx.Response) -> bool:
    return response.status_code == 200


# -- the operations ------------------------------------------------------------------------


def list_functions() -> Call[list[FunctionSummary]]:
    return Call("GET", "/v1/functions", _summaries)


def get_function(name: str) -> Call[FunctionSpec]:
    return Call("GET", f"/v1/functions/{_segment(name)}", _spec)


def register(spec: Mapping[str, Any]) -> Call[FunctionSummary]:
    return Call("POST", "/v1/functions", _summary, json=dict(spec))


def update(spec: Mapping[str, Any]) -> Call[FunctionSpec]:
    return Call("PUT", f"/v1/functions/{_segment(str(spec.get('name', '')))}", _spec, json=dict(spec))


def delete(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/functions/{_segment(name)}", _none)


def _invocation_body(
    input_value: Any, data: bytes | None, metadata: Mapping[str, str] | None
) -> dict[str, Any]:
    if data is not None:
        return {"content": data, "headers": {"Content-Type": OCTET_STREAM}}
    body: dict[str, Any] = {"input": input_value}
    if metadata:
        body["metadata"] = dict(metadata)
    return {"json": body}


def invoke(
    name: str,
    input_value: Any = None,
    *,
    data: bytes | None = None,
    metadata: Mapping[str, str] | None = None,
    options: InvocationOptions | None = None,
) -> Call[Invocation]:
    """A sync invocation: JSON `input_value`, or raw bytes `data` (application/octet-stream)."""
    body = _invocation_body(input_value, data, metadata)
    headers = {**(options or InvocationOptions()).as_headers(), **body.pop("headers", {})}
    return Call("POST", f"/v1/functions/{_segment(name)}:invoke", _invocation, headers=headers, **body)


def enqueue(
    name: str,
    input_value: Any = None,
    *,
    data: bytes | None = None,
    metadata: Mapping[str, str] | None = None,
    options: InvocationOptions | None = None,
) -> Call[Enqueued]:
    body = _invocation_body(input_value, data, metadata)
    headers = {**(options or InvocationOptions()).as_headers(), **body.pop("headers", {})}
    return Call("POST", f"/v1/functions/{_segment(name)}:enqueue", _enqueued, headers=headers, **body)


def get_execution(execution_id: str) -> Call[Execution]:
    return Call("GET", f"/v1/executions/{_segment(execution_id)}", _execution)


def list_executions(
    function: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    before: str | None = None,
) -> Call[list[Execution]]:
    params = {"function": function, "status": status, "before": before}
    query = {key: value for key, value in params.items() if value}
    if limit is not None:
        query["limit"] = str(limit)
    return Call("GET", "/v1/executions", _executions, params=query)


def function_status(name: str) -> Call[FunctionStatus]:
    return Call("GET", f"/v1/functions/{_segment(name)}/status", _status)


def log_params(
    execution: str | None = None, since: str | None = None, tail: int | None = None, follow: bool = False
) -> dict[str, str]:
    params = {"execution": execution or "", "since": since or ""}
    query = {key: value for key, value in params.items() if value}
    if tail is not None:
        query["tail"] = str(tail)
    if follow:
        query["follow"] = "true"
    return query


def logs(
    name: str, execution: str | None = None, since: str | None = None, tail: int | None = None
) -> Call[list[LogLine]]:
    return Call(
        "GET", f"/v1/functions/{_segment(name)}/logs", _logs, params=log_params(execution, since, tail)
    )


def follow_path(name: str) -> str:
    return f"/v1/functions/{_segment(name)}/logs"


def event_line(line: str) -> LogLine | None:
    """One line of the followed logs' event stream: a LogLine, None for framing, raises an error event."""
    if not line.startswith("data: "):
        return None
    body = json.loads(line[len("data: ") :])
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        raise error_for(str(error.get("code", "")), str(error.get("message", "")), body=body)
    return LogLine.from_json(body)


def ready() -> Call[bool]:
    return Call("GET", "/readyz", _ready)


def wait_timed_out(execution_id: str, timeout_s: float) -> NanofaasError:
    message = f"execution '{execution_id}' did not end within {timeout_s:g} s"
    return WaitTimedOut(message, execution_id=execution_id)
