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


class NameTaken(Exception):
    """The caller's name for a new execution is in use, or was retired (execution_names.py)."""


class CompletionRefused(Exception):
    """A completion report without the authority to end its attempt (docs/security.md).

    `authenticated` is False when no credential was given at all (UNAUTHENTICATED),
    True when one was given but is not the reported attempt's (PERMISSION_DENIED).
    The message never repeats the token.
    """

    def __init__(self, message: str, *, authenticated: bool) -> None:
        super().__init__(message)
        self.authenticated = authenticated
