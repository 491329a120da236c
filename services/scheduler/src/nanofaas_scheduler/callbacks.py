"""Completion callbacks: POST an ended execution's status to the URL its caller gave.

Delivery runs in background tasks with a few jittered retries; a receiver that
is down is logged and counted, and never holds up the scheduler.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from nanofaas_scheduler.core.execution import Execution, State

log = logging.getLogger(__name__)


def _iso(ms: int) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_json(execution: Execution) -> bytes:
    """The execution in the REST ExecutionStatus shape, as GET /v1/executions/{id} shows it."""
    body: dict[str, Any] = {
        "executionId": execution.id,
        "functionName": execution.function_name,
        "status": execution.state.value,
        "attempts": execution.attempts,
        "traceId": execution.trace_id,
        "enqueuedAt": _iso(execution.enqueued_at_ms),
        "startedAt": _iso(execution.started_at_ms),
        "finishedAt": _iso(execution.finished_at_ms),
    }
    if execution.state is State.SUCCESS:
        if execution.output_content_type == "application/octet-stream":
            body["output"] = base64.b64encode(execution.output).decode()
            body["outputContentType"] = execution.output_content_type
        else:
            body["output"] = orjson.Fragment(execution.output or b"null")
    if execution.error_code:
        body["error"] = {"code": execution.error_code, "message": execution.error_message}
    return orjson.dumps(body)


class CallbackSender:
    def __init__(self, attempts: int = 4, base_delay_s: float = 0.2, timeout_s: float = 5.0) -> None:
        self._attempts = attempts
        self._base_delay = base_delay_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def __call__(self, execution: Execution) -> None:
        """An execution ended: schedule delivery if its caller asked for a callback."""
        if not execution.callback_url:
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(execution.callback_url, status_json(execution))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        problem = ""
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
                    if 400 <= response.status < 500 and response.status not in (408, 429):
                        break
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self._attempts:
                await asyncio.sleep(self._base_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
        self.failed += 1
        log.warning("callback not delivered", extra={"url": url, "problem": problem})

    async def close(self, grace_s: float = 2.0) -> None:
        """Give pending deliveries a moment, then stop them."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
        if self._session is not None:
            await self._session.close()
