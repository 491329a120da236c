"""The error codes the scheduler produces, named by the contract's ErrorCode enum.

Deriving each string from the enum means a code the contract does not list
cannot be produced: a typo fails at import, not in a client.
"""

from __future__ import annotations

from nanofaas.v1 import types_pb2


def code_name(value: types_pb2.ErrorCode.ValueType) -> str:
    """The wire form of an ErrorCode: its name without the ERROR_CODE_ prefix."""
    return types_pb2.ErrorCode.Name(value).removeprefix("ERROR_CODE_")


FUNCTION_ERROR = code_name(types_pb2.ERROR_CODE_FUNCTION_ERROR)
TIMEOUT = code_name(types_pb2.ERROR_CODE_TIMEOUT)
CRASH = code_name(types_pb2.ERROR_CODE_CRASH)
START_FAILED = code_name(types_pb2.ERROR_CODE_START_FAILED)
CANCELLED = code_name(types_pb2.ERROR_CODE_CANCELLED)
INTERNAL = code_name(types_pb2.ERROR_CODE_INTERNAL)
UNRUNNABLE_FUNCTION = code_name(types_pb2.ERROR_CODE_UNRUNNABLE_FUNCTION)
INVALID_ENDPOINT = code_name(types_pb2.ERROR_CODE_INVALID_ENDPOINT)
FUNCTION_DELETED = code_name(types_pb2.ERROR_CODE_FUNCTION_DELETED)
SHUTTING_DOWN = code_name(types_pb2.ERROR_CODE_SHUTTING_DOWN)
OUTPUT_TOO_LARGE = code_name(types_pb2.ERROR_CODE_OUTPUT_TOO_LARGE)
URL_NOT_ALLOWED = code_name(types_pb2.ERROR_CODE_URL_NOT_ALLOWED)

# Every code that may appear in ErrorInfo.code of an execution.
EXECUTION_CODES = frozenset(
    {
        FUNCTION_ERROR,
        TIMEOUT,
        CRASH,
        START_FAILED,
        CANCELLED,
        INTERNAL,
        UNRUNNABLE_FUNCTION,
        INVALID_ENDPOINT,
        FUNCTION_DELETED,
        SHUTTING_DOWN,
        OUTPUT_TOO_LARGE,
        URL_NOT_ALLOWED,
    }
)
