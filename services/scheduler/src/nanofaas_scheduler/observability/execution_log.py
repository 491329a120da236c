"""One log line per ended execution: INFO when it failed, DEBUG when it succeeded (the hot path)."""

from __future__ import annotations

import logging

from nanofaas_scheduler.core.execution import Execution, State

log = logging.getLogger("nanofaas_scheduler.executions")


def log_execution_end(execution: Execution) -> None:
    level = logging.DEBUG if execution.state is State.SUCCESS else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = {
        "executionId": execution.id,
        "functionName": execution.function_name,
        "traceId": execution.trace_id,
        "attempt": execution.attempts,
        "status": execution.state.value,
    }
    if execution.error_code:
        fields["errorCode"] = execution.error_code
    log.log(level, "execution ended", extra=fields)
