"""REST models: the JSON shape of function specs and the OpenAPI schemas of every body.

The gateway checks only what HTTP needs: types (pydantic Strict types) and required
fields. Ranges and defaults are the registry's alone, so the same bad value always
gets the registry's answer, whatever its size; the descriptions name its limits.
Invocation bodies are parsed by hand on the hot path (see invocation_body.py);
their models here only document the contract.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9._-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)


class ExecutionModeIn(StrEnum):
    """Accepted on input; REMOTE and POOL are aliases of JOB and WARM."""

    JOB = "JOB"
    WARM = "WARM"
    ENDPOINT = "ENDPOINT"
    REMOTE = "REMOTE"
    POOL = "POOL"


class ExecutionMode(StrEnum):
    JOB = "JOB"
    WARM = "WARM"
    ENDPOINT = "ENDPOINT"


class RuntimeMode(StrEnum):
    HTTP = "HTTP"
    STDIO = "STDIO"
    FILE = "FILE"


class InvocationStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"


class ExecutionState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"


class _RestModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ResourceRequests(_RestModel):
    """Requests that differ from the limits; each unset one equals its limit."""

    cpu: StrictStr | None = None
    memory: StrictStr | None = None


class Resources(_RestModel):
    """Kubernetes limits, e.g. cpu "500m", memory "256Mi"; the requests too unless `requests` differ."""

    cpu: StrictStr | None = None
    memory: StrictStr | None = None
    requests: ResourceRequests | None = Field(
        default=None, description="each at most its limit; unset = requests equal limits"
    )


class Toleration(_RestModel):
    """A Kubernetes toleration of the function's pods (core/v1 Toleration)."""

    key: StrictStr | None = None
    operator: StrictStr | None = Field(default=None, description="Equal (default) or Exists")
    value: StrictStr | None = None
    effect: StrictStr | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule, NoExecute, or unset for all"
    )
    tolerationSeconds: StrictInt | None = Field(default=None, description="only with effect NoExecute")


class SecretMount(_RestModel):
    """A Kubernetes Secret of the function's namespace, by name: the platform never reads its values."""

    name: StrictStr
    mountPath: StrictStr | None = Field(
        default=None, description="files in a read-only volume here; unset = every key as an env var"
    )


_KUBERNETES_ONLY = "Kubernetes backend only (the local backend ignores it)"


class FunctionSpec(_RestModel):
    """A function definition as registered; unset optional fields get the registry's defaults."""

    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
    image: Annotated[StrictStr, Field(min_length=1)]
    command: list[StrictStr] | None = Field(default=None, description="argv, never run by a shell")
    runtimeCommand: StrictStr | None = Field(default=None, description="split like a shell would")
    env: dict[str, StrictStr] | None = None
    resources: Resources | None = None
    timeoutMs: StrictInt | None = Field(
        json_schema_extra={"minimum": 1, "maximum": 300000},
        default=None,
        description="milliseconds; default 30000; the registry accepts 1 to 300000",
    )
    concurrency: StrictInt | None = Field(
        json_schema_extra={"minimum": 1, "maximum": 10000},
        default=None,
        description="default 4; the registry accepts 1 to 10000",
    )
    queueSize: StrictInt | None = Field(
        json_schema_extra={"minimum": 1, "maximum": 1000000},
        default=None,
        description="default 100; the registry accepts 1 to 1000000",
    )
    maxRetries: StrictInt | None = Field(
        json_schema_extra={"minimum": 0, "maximum": 100},
        default=None,
        description="default 3; the registry accepts 0 to 100",
    )
    executionMode: ExecutionModeIn | None = Field(
        default=None, description="default JOB, or ENDPOINT when endpointUrl is set"
    )
    runtimeMode: RuntimeMode | None = Field(default=None, description="default HTTP")
    endpointUrl: StrictStr | None = Field(default=None, description="required for ENDPOINT")
    rateLimitPerSecond: StrictFloat | None = Field(
        json_schema_extra={"minimum": 0, "maximum": 1000000},
        default=None,
        description="admissions per second for this function; default 0 = no limit; "
        "the registry accepts 0 to 1000000",
    )
    imagePullPolicy: StrictStr | None = Field(
        default=None, description=f"Always, IfNotPresent (default) or Never; {_KUBERNETES_ONLY}"
    )
    nodeSelector: dict[str, StrictStr] | None = Field(default=None, description=_KUBERNETES_ONLY)
    tolerations: list[Toleration] | None = Field(default=None, description=_KUBERNETES_ONLY)
    serviceAccountName: StrictStr | None = Field(default=None, description=_KUBERNETES_ONLY)
    secrets: list[SecretMount] | None = Field(
        default=None, description=f"Secrets by name, as env vars or files; {_KUBERNETES_ONLY}"
    )
    # Autoscaling of WARM replicas (docs/autoscaling.md).
    minReplicas: StrictInt | None = Field(
        default=None, description="WARM replicas kept when idle; default 1; 0 = scale to zero"
    )
    maxReplicas: StrictInt | None = Field(
        default=None, description="WARM replicas at most; default and maximum: concurrency"
    )
    targetInFlight: StrictInt | None = Field(
        default=None, description="in-flight plus queued invocations per replica; default 1"
    )
    scaleDownDelayMs: StrictInt | None = Field(
        default=None, description="low demand this long before a replica goes; default 60000; 0 to 3600000"
    )


class FunctionSpecOut(BaseModel):
    """A stored function definition with every default applied; unset optional fields are omitted."""

    name: str
    image: str
    command: list[str] | None = None
    runtimeCommand: str | None = None
    env: dict[str, str]
    resources: Resources | None = None
    timeoutMs: int
    concurrency: int
    queueSize: int
    maxRetries: int
    executionMode: ExecutionMode
    runtimeMode: RuntimeMode
    endpointUrl: str | None = None
    rateLimitPerSecond: float = 0
    imagePullPolicy: str | None = None
    nodeSelector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    serviceAccountName: str | None = None
    secrets: list[SecretMount] | None = None
    minReplicas: int | None = None
    maxReplicas: int | None = None
    targetInFlight: int | None = None
    scaleDownDelayMs: int | None = None


class FunctionSummary(BaseModel):
    name: str
    image: str
    concurrency: int
    executionMode: ExecutionMode
    createdAt: str = Field(description="ISO-8601 UTC, e.g. 2024-05-01T12:00:00.000Z")


class ErrorInfo(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response that does not belong to an execution."""

    error: ErrorInfo


class InvocationRequest(BaseModel):
    """The application/json body of invoke and enqueue."""

    input: Any = None
    metadata: dict[str, str] | None = Field(
        default=None, description="at most 64 entries and 16 KiB (NANOFAAS_MAX_METADATA_*)", max_length=64
    )


class InvocationResponse(BaseModel):
    executionId: str
    status: InvocationStatus
    output: Any = None
    error: ErrorInfo | None = None


class EnqueueResponse(BaseModel):
    executionId: str
    status: ExecutionState = Field(description="queued for a new execution")


class ExecutionStatus(BaseModel):
    executionId: str
    functionName: str
    status: ExecutionState
    attempts: int
    traceId: str
    enqueuedAt: str | None
    startedAt: str | None = Field(default=None, description="omitted until started")
    finishedAt: str | None = Field(default=None, description="omitted until finished")
    output: Any = Field(default=None, description="a JSON value, or base64 for binary output")
    outputContentType: str | None = Field(
        default=None, description="application/octet-stream when output is base64 bytes"
    )
    error: ErrorInfo | None = None


class CompleteExecutionRequest(BaseModel):
    """A runtime's report of how one attempt of an execution ended."""

    status: Literal["success", "error"] | None = None
    attempt: int | None = Field(
        default=None,
        description="the attempt reported (X-Attempt of the invocation); 0 or absent = the attempt "
        "whose X-Completion-Token is sent",
    )
    success: bool | None = Field(
        default=None, description="alternative to status; one of the two (or an error object) is required"
    )
    output: Any = None
    outputContentType: str | None = Field(
        default=None, description="application/octet-stream when output is base64 bytes"
    )
    error: ErrorInfo | None = Field(
        default=None, description="code: an execution error code of docs/errors.md; default FUNCTION_ERROR"
    )


class HealthStatus(BaseModel):
    status: str


class Replicas(BaseModel):
    """A function's replicas (processes or pods); JOB and ENDPOINT functions report 0."""

    current: int = Field(description="replicas that exist, starting ones included")
    ready: int = Field(description="of those, the ones ready to serve")
    desired: int = Field(description="what the autoscaler aims for now")
    min: int = Field(description="the function's minReplicas")
    max: int = Field(description="the function's maxReplicas")


class FunctionStatus(BaseModel):
    """A function's queue and replicas as the scheduler sees them now."""

    name: str
    replicas: Replicas
    inFlight: int
    queued: int
    oldestQueuedAgeMs: int = Field(description="age of the oldest queued execution; 0 when none is queued")


class LogLine(BaseModel):
    ts: str = Field(description="when the platform received the line, ISO-8601 UTC")
    stream: str = Field(description="stdout or stderr")
    executionId: str | None = Field(default=None, description="omitted when the line belongs to none")
    level: str
    message: str


class FunctionLogs(BaseModel):
    """The kept lines of a function, oldest first (with follow=true: server-sent events of LogLine)."""

    name: str
    lines: list[LogLine]
