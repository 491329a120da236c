"""The exit codes scripts can rely on (documented in clients/python/README.md)."""

from __future__ import annotations

from nanofaas_client.errors import (
    AlreadyExists,
    ExecutionFailed,
    ExecutionTimeout,
    InvalidRequest,
    NanofaasError,
    NotFound,
    PlatformUnreachable,
    RateLimited,
    Unauthenticated,
    Unavailable,
    WaitTimedOut,
)

OK = 0
# The execution ran and failed (handler error, crash, could not start...).
EXECUTION_FAILED = 1
# Bad command line or a bad local file (click's own usage errors are 2 too).
USAGE = 2
PLATFORM_UNREACHABLE = 3
NOT_FOUND = 4
# The platform refused the request: invalid value, name taken.
REFUSED = 5
RATE_LIMITED = 6
# The platform is unavailable, shutting down, or failed internally.
UNAVAILABLE = 7
# The execution timed out, or waiting for it gave up first.
TIMED_OUT = 8
# A local step of `fn deploy` failed: the function's virtualenv, or its image, could not be
# built, or the image could not be pushed.
BUILD_FAILED = 9
# `fn deploy --image-build`: no docker CLI to build with.
ENGINE_MISSING = 10

_BY_FAMILY: tuple[tuple[type[NanofaasError], int], ...] = (
    (PlatformUnreachable, PLATFORM_UNREACHABLE),
    (NotFound, NOT_FOUND),
    (InvalidRequest, REFUSED),
    (AlreadyExists, REFUSED),
    (Unauthenticated, REFUSED),
    (RateLimited, RATE_LIMITED),
    (ExecutionFailed, EXECUTION_FAILED),
    (ExecutionTimeout, TIMED_OUT),
    (WaitTimedOut, TIMED_OUT),
    (Unavailable, UNAVAILABLE),
)


def exit_code_for(error: NanofaasError) -> int:
    for family, code in _BY_FAMILY:
        if isinstance(error, family):
            return code
    return UNAVAILABLE
