"""POST an attempt to a function's HTTP server over a keep-alive pool.

Two clients, one protocol (function_protocol.py): `invoke` here, over the lean
hop client for the processes and pods we run; `post_invocation` in
endpoint_client.py, over aiohttp for ENDPOINT functions (any URL, https).
"""

from __future__ import annotations

from collections.abc import Callable

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, crash, function_error
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.function_protocol import (
    HEADER_POD_UID,
    INVOKE_PATH,
    decode_response,
    request_body,
    request_headers,
)
from nanofaas_scheduler.dispatch.hop_client import HopClient, HopError, InvalidHeader, Response, Target

# The largest output read from a function (NANOFAAS_MAX_OUTPUT_BYTES; set once at start by the
# server). Process-wide like the gRPC message limit it keeps outputs under: an output that would
# not fit in one message to the gateway ends only its own execution, never the shared stream.
DEFAULT_MAX_OUTPUT_BYTES = 32 * 1024 * 1024
_max_output_bytes = DEFAULT_MAX_OUTPUT_BYTES


def set_max_output_bytes(limit: int) -> None:
    global _max_output_bytes
    _max_output_bytes = limit


def max_output_bytes() -> int:
    return _max_output_bytes


def output_too_large(size: int | None = None) -> Outcome:
    """The outcome of an output over the limit: that execution fails, nothing else."""
    seen = f"{size} bytes" if size is not None else "more"
    return function_error(
        f"output is {seen}, over the limit of {_max_output_bytes} bytes", codes.OUTPUT_TOO_LARGE
    )


def _headers(attempt: Attempt, pod_uid: str) -> dict[str, str]:
    headers = request_headers(attempt)
    if pod_uid:
        headers[HEADER_POD_UID] = pod_uid
    return headers


async def invoke(
    client: HopClient,
    target: Target,
    attempt: Attempt,
    *,
    keep_alive: bool = True,
    pod_uid: str = "",
    connect_timeout: float | None = None,
    on_connection_failure: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> Outcome:
    """One attempt to a process or pod we run; connection failures are CRASH so the scheduler retries.

    `keep_alive=False` for a server that stops right after: an idle pooled
    connection would only make its graceful shutdown wait. `pod_uid`: the pod
    meant (Kubernetes), which any other process on that address refuses.
    `connect_timeout`: a pod address that does not accept within it is dead (a
    lost node drops SYNs: without a bound the attempt would wait to its deadline).
    `on_connection_failure` is told when the failure was the connection's (refused,
    reset, cut, not accepted in time, not HTTP) rather than an answer's.
    `deadline` (loop time): hop_client.Late is raised when it passes first.
    """
    try:
        response = await client.request(
            target,
            "POST",
            INVOKE_PATH,
            _headers(attempt, pod_uid),
            request_body(attempt),
            max_body=_max_output_bytes,
            keep_alive=keep_alive,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )
    except HopError as exc:
        if on_connection_failure is not None:
            on_connection_failure()
        return crash(f"{target.url(INVOKE_PATH)}: {exc}")
    except InvalidHeader as exc:
        return function_error(str(exc))
    return outcome_of(response)


def outcome_of(response: Response) -> Outcome:
    """A hop answer judged by the protocol (an output over the cap was never read)."""
    if response.body is None:
        return output_too_large(response.content_length)
    return decode_response(response.status, response.content_type, response.body)
