"""Why the scheduler refused an invocation (mapped to gRPC status codes at the edge)."""

from __future__ import annotations


class FunctionNotFound(Exception):
    pass


class Rejected(Exception):
    """Admission said no; the caller may try again after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    pass
