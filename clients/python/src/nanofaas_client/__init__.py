"""nanofaas-client: typed Python clients for nanofaas (REST sync and asyncio, thin gRPC) and the CLI.

from nanofaas_client import Client
with Client("http://127.0.0.1:8080") as client:
    print(client.invoke("hello", {"name": "you"}).output)
"""

from nanofaas_client.errors import (
    AlreadyExists,
    ExecutionFailed,
    ExecutionTimeout,
    InternalError,
    InvalidRequest,
    NanofaasError,
    NotFound,
    PlatformUnreachable,
    RateLimited,
    Unauthenticated,
    Unavailable,
    WaitTimedOut,
)
from nanofaas_client.models import (
    Enqueued,
    Execution,
    FunctionSpec,
    FunctionStatus,
    FunctionSummary,
    Invocation,
    LogLine,
    Replicas,
)
from nanofaas_client.policies import Backoff, RetryPolicy
from nanofaas_client.rest import AsyncClient, Client
from nanofaas_client.tracing import propagate

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Backoff",
    "Client",
    "Enqueued",
    "Execution",
    "ExecutionFailed",
    "ExecutionTimeout",
    "FunctionSpec",
    "FunctionStatus",
    "FunctionSummary",
    "InternalError",
    "InvalidRequest",
    "Invocation",
    "LogLine",
    "NanofaasError",
    "NotFound",
    "PlatformUnreachable",
    "RateLimited",
    "Replicas",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "WaitTimedOut",
    "propagate",
]
