"""How one attempt ended, as every backend reports it to the scheduler."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nanofaas_scheduler.core import codes

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_BYTES = "application/octet-stream"


class OutcomeKind(enum.Enum):
    """What happened; only CRASH (an infrastructure failure) is worth another attempt."""

    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    CRASH = "crash"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    output: bytes = b""  # SUCCESS: one JSON value, or raw bytes
    content_type: str = CONTENT_TYPE_JSON  # or CONTENT_TYPE_BYTES
    error_code: str = ""  # a codes.* value for anything but SUCCESS
    message: str = ""


def success(output: bytes, content_type: str = CONTENT_TYPE_JSON) -> Outcome:
    return Outcome(OutcomeKind.SUCCESS, output=output, content_type=content_type)


def function_error(message: str, code: str = codes.FUNCTION_ERROR) -> Outcome:
    """The function failed, or the platform refused it for good: not retried."""
    return Outcome(OutcomeKind.FUNCTION_ERROR, error_code=code, message=message)


def crash(message: str, code: str = codes.CRASH) -> Outcome:
    """An infrastructure failure (died, unreachable, failed to start): retried."""
    return Outcome(OutcomeKind.CRASH, error_code=code, message=message)


def timeout(message: str) -> Outcome:
    return Outcome(OutcomeKind.TIMEOUT, error_code=codes.TIMEOUT, message=message)
