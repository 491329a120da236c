"""What the platform answers, as typed values (the REST JSON shapes of the gateway's OpenAPI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A FunctionSpec as JSON (see manifest.FUNCTION_SPEC_FIELDS for its fields).
FunctionSpec = dict[str, Any]
TERMINAL_STATES = frozenset({"success", "error", "timeout"})


@dataclass(frozen=True, slots=True)
class FunctionSummary:
    name: str
    image: str
    concurrency: int
    execution_mode: str
    created_at: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FunctionSummary:
        return cls(
            name=str(body["name"]),
            image=str(body.get("image", "")),
            concurrency=int(body.get("concurrency", 0)),
            execution_mode=str(body.get("executionMode", "")),
            created_at=str(body.get("createdAt", "")),
        )


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Invocation:
    """The answer of a synchronous invocation that succeeded (failures raise)."""

    execution_id: str
    status: str
    # The function's JSON output, or bytes for a binary one.
    output: Any


@dataclass(frozen=True, slots=True)
class Enqueued:
    execution_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution's status (ExecutionStatus); `output` only once it succeeded, and not in listings."""

    execution_id: str
    function_name: str
    status: str
    attempts: int
    trace_id: str
    enqueued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    output: Any = None
    output_content_type: str | None = None
    error: ErrorInfo | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Execution:
        error = body.get("error")
        return cls(
            execution_id=str(body["executionId"]),
            function_name=str(body.get("functionName", "")),
            status=str(body.get("status", "")),
            attempts=int(body.get("attempts", 0)),
            trace_id=str(body.get("traceId", "")),
            enqueued_at=body.get("enqueuedAt"),
            started_at=body.get("startedAt"),
            finished_at=body.get("finishedAt"),
            output=body.get("output"),
            output_content_type=body.get("outputContentType"),
            error=ErrorInfo(str(error.get("code", "")), str(error.get("message", "")))
            if isinstance(error, dict)
            else None,
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Replicas:
    current: int
    ready: int
    desired: int
    min: int
    max: int


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    name: str
    replicas: Replicas
    in_flight: int
    queued: int
    oldest_queued_age_ms: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FunctionStatus:
        replicas = body.get("replicas") or {}
        return cls(
            name=str(body["name"]),
            replicas=Replicas(
                *(int(replicas.get(k, 0)) for k in ("current", "ready", "desired", "min", "max"))
            ),
            in_flight=int(body.get("inFlight", 0)),
            queued=int(body.get("queued", 0)),
            oldest_queued_age_ms=int(body.get("oldestQueuedAgeMs", 0)),
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: str
    stream: str
    level: str
    message: str
    execution_id: str = ""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> LogLine:
        return cls(
            ts=str(body.get("ts", "")),
            stream=str(body.get("stream", "")),
            level=str(body.get("level", "")),
            message=str(body.get("message", "")),
            execution_id=str(body.get("executionId", "")),
        )
