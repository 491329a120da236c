"""How one invocation ended, as the function side judges it (the watchdog's STDIO/FILE modes).

The function side's own type: the scheduler has its own and learns the outcome
only from the HTTP response (docs/function-protocol.md), never from this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_BYTES = "application/octet-stream"

CODE_FUNCTION_ERROR = "FUNCTION_ERROR"
CODE_TIMEOUT = "TIMEOUT"
CODE_CRASH = "CRASH"
CODE_START_FAILED = "START_FAILED"


class OutcomeKind(enum.Enum):
    """What happened; CRASH is an infrastructure failure the caller may retry."""

    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    CRASH = "crash"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    output: bytes = b""  # SUCCESS: the output (JSON value bytes, or raw bytes)
    content_type: str = CONTENT_TYPE_JSON  # or CONTENT_TYPE_BYTES
    error_code: str = ""  # FUNCTION_ERROR | TIMEOUT | CRASH | START_FAILED
    message: str = ""


def success(output: bytes, content_type: str = CONTENT_TYPE_JSON) -> Outcome:
    return Outcome(OutcomeKind.SUCCESS, output=output, content_type=content_type)


def function_error(message: str) -> Outcome:
    return Outcome(OutcomeKind.FUNCTION_ERROR, error_code=CODE_FUNCTION_ERROR, message=message)


def crash(message: str, error_code: str = CODE_CRASH) -> Outcome:
    """An infrastructure failure: death by a signal, or (with START_FAILED) a command that cannot start."""
    return Outcome(OutcomeKind.CRASH, error_code=error_code, message=message)


def timeout(message: str) -> Outcome:
    return Outcome(OutcomeKind.TIMEOUT, error_code=CODE_TIMEOUT, message=message)
