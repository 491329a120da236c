"""Every error code of the contract has its exception family and its exit code."""

from __future__ import annotations

import pytest
from nanofaas_client import errors
from nanofaas_client.cli import exit_codes


def test_every_contract_code_has_a_family() -> None:
    assert set(errors.FAMILIES) == errors.ALL_CODES


@pytest.mark.parametrize(
    ("code", "status", "family", "exit_code"),
    [
        ("INVALID_ARGUMENT", 400, errors.InvalidRequest, exit_codes.REFUSED),
        ("VALIDATION_ERROR", 422, errors.InvalidRequest, exit_codes.REFUSED),
        ("NOT_FOUND", 404, errors.NotFound, exit_codes.NOT_FOUND),
        ("FUNCTION_DELETED", 404, errors.NotFound, exit_codes.NOT_FOUND),
        ("ALREADY_EXISTS", 409, errors.AlreadyExists, exit_codes.REFUSED),
        ("RESOURCE_EXHAUSTED", 429, errors.RateLimited, exit_codes.RATE_LIMITED),
        ("UNAVAILABLE", 503, errors.Unavailable, exit_codes.UNAVAILABLE),
        ("SHUTTING_DOWN", 503, errors.Unavailable, exit_codes.UNAVAILABLE),
        ("FUNCTION_ERROR", 502, errors.ExecutionFailed, exit_codes.EXECUTION_FAILED),
        ("CRASH", 502, errors.ExecutionFailed, exit_codes.EXECUTION_FAILED),
        ("TIMEOUT", 408, errors.ExecutionTimeout, exit_codes.TIMED_OUT),
        ("INTERNAL", 500, errors.InternalError, exit_codes.UNAVAILABLE),
        # An unknown code: the HTTP status decides.
        ("SOMETHING_NEW", 409, errors.AlreadyExists, exit_codes.REFUSED),
        ("", 503, errors.Unavailable, exit_codes.UNAVAILABLE),
        ("", 599, errors.InternalError, exit_codes.UNAVAILABLE),
    ],
)
def test_codes_map_to_families_and_exit_codes(
    code: str, status: int, family: type[errors.NanofaasError], exit_code: int
) -> None:
    error = errors.error_for(code, "m", status=status)
    assert type(error) is family
    assert exit_codes.exit_code_for(error) == exit_code
    assert str(error) == (f"{code}: m" if code else "m")


def test_unreachable_and_wait_have_their_exit_codes() -> None:
    assert exit_codes.exit_code_for(errors.PlatformUnreachable("x")) == exit_codes.PLATFORM_UNREACHABLE
    assert exit_codes.exit_code_for(errors.WaitTimedOut("x")) == exit_codes.TIMED_OUT
