"""Schemathesis hooks (SCHEMATHESIS_HOOKS=nanofaas_checks): the platform's own server-error check.

A 502 or 408 with an execution in its body is a function's failure or timeout, documented
for :invoke; any other 5xx (a 500, a 503 while everything runs) is the platform's fault.
"""

from __future__ import annotations

from typing import Any

import schemathesis

_EXECUTION_STATUSES = (408, 502)


@schemathesis.check
def no_platform_error(ctx: Any, response: Any, case: Any) -> bool | None:
    status = response.status_code
    if status < 500 and status != 408:
        return None
    body = (
        response.json()
        if response.headers.get("content-type", [""])[0].startswith("application/json")
        else {}
    )
    if status in _EXECUTION_STATUSES and isinstance(body, dict) and body.get("executionId"):
        return None
    raise AssertionError(f"platform error {status}: {response.text[:300]}")


_TRUE = {"1", "t", "true", "y", "yes", "on"}  # what the gateway reads as a true boolean


@schemathesis.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    """No `follow=true`: a followed log stream never ends by design, so the run would stall on it.

    Other `follow` values (false, garbage) are still generated.
    """
    return not query or str(query.get("follow", "")).lower() not in _TRUE
