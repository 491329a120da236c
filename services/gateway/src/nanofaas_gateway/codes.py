"""The REST error codes the gateway writes, each derived from the contract's ErrorCode enum.

On the wire a code is the enum value's name without its ERROR_CODE_ prefix (types.proto),
so a code the contract does not list cannot be spelled here.
"""

from __future__ import annotations

from nanofaas.v1 import types_pb2

_PREFIX = "ERROR_CODE_"


def code_name(value: types_pb2.ErrorCode.ValueType) -> str:
    """An ErrorCode value as its wire name, e.g. ERROR_CODE_NOT_FOUND -> "NOT_FOUND"."""
    return types_pb2.ErrorCode.Name(value).removeprefix(_PREFIX)


# Every code the contract defines (UNSPECIFIED is no code).
ALL_CODES = frozenset(
    code_name(value) for value in types_pb2.ErrorCode.values() if value != types_pb2.ERROR_CODE_UNSPECIFIED
)

FUNCTION_ERROR = code_name(types_pb2.ERROR_CODE_FUNCTION_ERROR)
TIMEOUT = code_name(types_pb2.ERROR_CODE_TIMEOUT)
CRASH = code_name(types_pb2.ERROR_CODE_CRASH)
INTERNAL = code_name(types_pb2.ERROR_CODE_INTERNAL)
FUNCTION_DELETED = code_name(types_pb2.ERROR_CODE_FUNCTION_DELETED)
SHUTTING_DOWN = code_name(types_pb2.ERROR_CODE_SHUTTING_DOWN)
INVALID_ARGUMENT = code_name(types_pb2.ERROR_CODE_INVALID_ARGUMENT)
VALIDATION_ERROR = code_name(types_pb2.ERROR_CODE_VALIDATION_ERROR)
NOT_FOUND = code_name(types_pb2.ERROR_CODE_NOT_FOUND)
ALREADY_EXISTS = code_name(types_pb2.ERROR_CODE_ALREADY_EXISTS)
METHOD_NOT_ALLOWED = code_name(types_pb2.ERROR_CODE_METHOD_NOT_ALLOWED)
PAYLOAD_TOO_LARGE = code_name(types_pb2.ERROR_CODE_PAYLOAD_TOO_LARGE)
UNSUPPORTED_MEDIA_TYPE = code_name(types_pb2.ERROR_CODE_UNSUPPORTED_MEDIA_TYPE)
RESOURCE_EXHAUSTED = code_name(types_pb2.ERROR_CODE_RESOURCE_EXHAUSTED)
UNAVAILABLE = code_name(types_pb2.ERROR_CODE_UNAVAILABLE)
UNAUTHENTICATED = code_name(types_pb2.ERROR_CODE_UNAUTHENTICATED)
PERMISSION_DENIED = code_name(types_pb2.ERROR_CODE_PERMISSION_DENIED)
# Input limits (docs/limits.md).
OUTPUT_TOO_LARGE = code_name(types_pb2.ERROR_CODE_OUTPUT_TOO_LARGE)
HEADERS_TOO_LARGE = code_name(types_pb2.ERROR_CODE_HEADERS_TOO_LARGE)
URI_TOO_LONG = code_name(types_pb2.ERROR_CODE_URI_TOO_LONG)
URL_NOT_ALLOWED = code_name(types_pb2.ERROR_CODE_URL_NOT_ALLOWED)
