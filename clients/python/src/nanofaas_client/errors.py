"""One exception class per family of error codes, derived from the contract's ErrorCode enum.

A code is the enum value's name without its ERROR_CODE_ prefix (docs/errors.md).
Every code belongs to exactly one family; `tests/test_errors.py` fails when the
contract gains a code this table does not place.
"""

from __future__ import annotations

from typing import Any

from nanofaas.v1 import types_pb2

_PREFIX = "ERROR_CODE_"


def code_name(value: int) -> str:
    return types_pb2.ErrorCode.Name(value).removeprefix(_PREFIX)  # type: ignore[arg-type]


ALL_CODES = frozenset(
    code_name(value) for value in types_pb2.ErrorCode.values() if value != types_pb2.ERROR_CODE_UNSPECIFIED
)


class NanofaasError(Exception):
    """Anything the platform answered with an error (or did not answer at all).

    `code` is the contract's error code, `status` the HTTP status (0 when there
    was no answer), `execution_id` set when the error ended an execution.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int = 0,
        execution_id: str = "",
        retry_after_s: float | None = None,
        reason: str = "",
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.execution_id = execution_id
        self.retry_after_s = retry_after_s
        # Why admission was refused (X-Queue-Reject-Reason: depth, rate, estimated_wait).
        self.reason = reason
        self.body = body

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class PlatformUnreachable(NanofaasError):
    """No answer: the gateway is not running at that URL, or the network failed."""


class WaitTimedOut(NanofaasError):
    """Waiting for an execution gave up before it ended (the execution itself goes on)."""


class InvalidRequest(NanofaasError):
    """The request breaks a rule, a limit or the schema (400, 405, 413-415, 422, 431): do not retry."""


class Unauthenticated(NanofaasError):
    """No credentials, or ones the platform does not accept (401/403): pass --token / NANOFAAS_TOKEN."""


class NotFound(NanofaasError):
    """No such function, execution or route (also a function deleted while its execution waited)."""


class AlreadyExists(NanofaasError):
    """A function of that name is registered already."""


class RateLimited(NanofaasError):
    """Admission refused (429): retry after `retry_after_s` seconds; `reason` says why."""


class Unavailable(NanofaasError):
    """A service is not ready or is shutting down (503); retrying later may succeed."""


class ExecutionFailed(NanofaasError):
    """The execution ran (or tried to) and ended in error: the handler raised, crashed, could not start."""


class ExecutionTimeout(NanofaasError):
    """The execution ran out of its timeout (or the wait for it did)."""


class InternalError(NanofaasError):
    """A fault of the platform itself; the details are in its logs."""


# Every code of the contract, in its family.
FAMILIES: dict[str, type[NanofaasError]] = {
    "INVALID_ARGUMENT": InvalidRequest,
    "VALIDATION_ERROR": InvalidRequest,
    "METHOD_NOT_ALLOWED": InvalidRequest,
    "PAYLOAD_TOO_LARGE": InvalidRequest,
    "UNSUPPORTED_MEDIA_TYPE": InvalidRequest,
    "INVALID_REQUEST": ExecutionFailed,
    "NOT_FOUND": NotFound,
    "FUNCTION_DELETED": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": Unavailable,
    "SHUTTING_DOWN": Unavailable,
    "FUNCTION_ERROR": ExecutionFailed,
    "CRASH": ExecutionFailed,
    "START_FAILED": ExecutionFailed,
    "UNRUNNABLE_FUNCTION": ExecutionFailed,
    "INVALID_ENDPOINT": ExecutionFailed,
    "CANCELLED": ExecutionFailed,
    "TIMEOUT": ExecutionTimeout,
    "INTERNAL": InternalError,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": Unauthenticated,
    "OUTPUT_TOO_LARGE": ExecutionFailed,
    "HEADERS_TOO_LARGE": InvalidRequest,
    "URI_TOO_LONG": InvalidRequest,
    "URL_NOT_ALLOWED": InvalidRequest,
}
# Without a (known) code, the HTTP status decides.
_BY_STATUS: dict[int, type[NanofaasError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Unauthenticated,
    404: NotFound,
    405: InvalidRequest,
    408: ExecutionTimeout,
    409: AlreadyExists,
    413: InvalidRequest,
    414: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    431: InvalidRequest,
    503: Unavailable,
}


def error_for(
    code: str,
    message: str,
    *,
    status: int = 0,
    execution_id: str = "",
    retry_after_s: float | None = None,
    reason: str = "",
    body: Any = None,
) -> NanofaasError:
    """The exception for a code (or, for an unknown code, for the HTTP status)."""
    family = (
        FAMILIES.get(code) or _BY_STATUS.get(status) or (InternalError if status >= 500 else NanofaasError)
    )
    return family(
        message,
        code=code,
        status=status,
        execution_id=execution_id,
        retry_after_s=retry_after_s,
        reason=reason,
        body=body,
    )
