"""Same value, same answer, whatever its size: every bounded field is judged by the registry alone.

The gateway passes any integer through (clamped to int64), so one bad value of a field
gets one status and one message whether it is one past the limit, 2**40, 2**70 or has
5000 digits, on POST and PUT alike; X-Timeout-Ms is judged by the scheduler with the
registry's limit and gets its own single answer.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from .helpers import RUNTIME_IMAGE, python_spec, register

HUGE = "9" * 5000  # past Python's int conversion limit (4300 digits)

# (field, minimum, maximum, the registry's message)
BOUNDED = [
    ("timeoutMs", 1, 300_000, "timeoutMs: must be between 1 and 300000"),
    ("concurrency", 1, 10_000, "concurrency: must be between 1 and 10000"),
    ("queueSize", 1, 1_000_000, "queueSize: must be between 1 and 1000000"),
    ("maxRetries", 0, 100, "maxRetries: must be between 0 and 100"),
    # The autoscaling fields (bounded by the default concurrency, 4, where docs/autoscaling.md says so).
    ("minReplicas", 0, 4, "minReplicas: must be between 0 and concurrency (4); 0 = scale to zero"),
    ("maxReplicas", 1, 4, "maxReplicas: must be between 1 and concurrency (4)"),
    ("targetInFlight", 1, 4, "targetInFlight: must be between 1 and concurrency (4)"),
    ("scaleDownDelayMs", 0, 3_600_000, "scaleDownDelayMs: must be between 0 and 3600000"),
]


def literals(minimum: int, maximum: int) -> list[str]:
    """Bad values of every size, as JSON literals (a 5000-digit one cannot come from a Python int)."""
    values = [minimum - 1, maximum + 1, 2**31, 2**32, 2**40, 2**63 - 1, 2**63, 2**70, -(2**70), 10**30]
    return [str(value) for value in values] + [HUGE, "-" + HUGE]


def body_with(spec: dict[str, Any], field: str, literal: str) -> bytes:
    """The spec's JSON with `field` set to the literal exactly as written."""
    placeholder = orjson.dumps({**spec, field: "@@"})
    return placeholder.replace(b'"@@"', literal.encode())


async def send(http: aiohttp.ClientSession, method: str, url: str, body: bytes) -> tuple[int, str, str]:
    async with http.request(method, url, data=body, headers={"Content-Type": "application/json"}) as response:
        error = (await response.json())["error"]
        return response.status, error["code"], error["message"]


@pytest.mark.parametrize("bounds", BOUNDED, ids=[field for field, *_ in BOUNDED])
async def test_a_bad_bounded_value_gets_one_answer_whatever_its_size(
    http: aiohttp.ClientSession, fn_name: str, bounds: tuple[str, int, int, str]
) -> None:
    field, minimum, maximum, message = bounds
    spec = {"name": fn_name, "image": RUNTIME_IMAGE}
    answers = {
        await send(http, "POST", "/v1/functions", body_with(spec, field, literal))
        for literal in literals(minimum, maximum)
    }
    assert answers == {(400, "INVALID_ARGUMENT", message)}
    await register(http, {**spec, field: maximum})  # the limits themselves are accepted
    answers = {
        await send(http, "PUT", f"/v1/functions/{fn_name}", body_with(spec, field, literal))
        for literal in literals(minimum, maximum)
    }
    assert answers == {(400, "INVALID_ARGUMENT", message)}
    async with http.get(f"/v1/functions/{fn_name}") as response:
        assert (await response.json())[field] == maximum  # no refused update took effect


async def test_a_bad_rate_limit_gets_one_answer_whatever_its_size(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    spec = {"name": fn_name, "image": RUNTIME_IMAGE}
    bad = ["1000000.5", "1e12", "1e400", str(2**70), HUGE, "-0.5", "-" + HUGE]
    answers = {
        await send(http, "POST", "/v1/functions", body_with(spec, "rateLimitPerSecond", v)) for v in bad
    }
    assert answers == {
        (400, "INVALID_ARGUMENT", "rateLimitPerSecond: must be between 0 and 1e+06 (0 = no limit)")
    }


async def test_a_bad_timeout_header_gets_one_answer_whatever_its_size(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "echo"))
    answers = set()
    for value in (
        "0",
        "-1",
        "300001",
        str(2**31),
        str(2**40),
        str(2**63),
        str(2**70),
        "-" + str(2**70),
        HUGE,
    ):
        async with http.post(
            f"/v1/functions/{fn_name}:invoke", json={"input": 1}, headers={"X-Timeout-Ms": value}
        ) as response:
            error = (await response.json())["error"]
            answers.add((response.status, error["code"], error["message"]))
    assert answers == {(400, "INVALID_ARGUMENT", "X-Timeout-Ms: must be between 1 and 300000")}
    async with http.post(
        f"/v1/functions/{fn_name}:invoke", json={"input": 1}, headers={"X-Timeout-Ms": "300000"}
    ) as response:
        assert response.status == 200  # the limit itself is accepted
