"""Pure functions: settings from the environment, conversions, JSON log lines."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import orjson
import pytest

import nanofaas_gateway
from nanofaas.v1 import types_pb2
from nanofaas_gateway import codes
from nanofaas_gateway.callbacks import url_origin
from nanofaas_gateway.config import ConfigError, Settings
from nanofaas_gateway.convert import (
    INT64_MAX,
    INT64_MIN,
    clamp_int64,
    int64_from_literal,
    is_json_media_type,
    loads_clamped,
    ms_to_iso,
    splice_json,
    summary_to_json,
)
from nanofaas_gateway.logging_setup import JsonFormatter, format_timestamp


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 8080, 8081)
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.scheduler_address == "127.0.0.1:9090"
    assert settings.registry_address == "127.0.0.1:9091"
    assert settings.log_level == "INFO"


def test_settings_in_a_pod_listen_on_all_interfaces() -> None:
    assert Settings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).host == "0.0.0.0"
    explicit = Settings.from_env(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "NANOFAAS_GATEWAY_HOST": "127.0.0.2"}
    )
    assert explicit.host == "127.0.0.2"


def test_settings_overrides() -> None:
    settings = Settings.from_env(
        {
            "NANOFAAS_GATEWAY_PORT": "9000",
            "NANOFAAS_GATEWAY_METRICS_PORT": "0",
            "NANOFAAS_MAX_BODY_BYTES": "2048",
            "NANOFAAS_SCHEDULER_ADDRESS": "sched:1",
            "NANOFAAS_REGISTRY_ADDRESS": "reg:2",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.port, settings.metrics_port, settings.max_body_bytes) == (9000, 0, 2048)
    assert (settings.scheduler_address, settings.registry_address, settings.log_level) == (
        "sched:1",
        "reg:2",
        "debug",  # resolved (any case) by logging_setup
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NANOFAAS_GATEWAY_PORT", "http"),
        ("NANOFAAS_GATEWAY_PORT", "65536"),
        ("NANOFAAS_MAX_BODY_BYTES", "-1"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("ms", "iso"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_714_564_800_123, "2024-05-01T12:00:00.123Z"),
        (1_001, "1970-01-01T00:00:01.001Z"),
    ],
)
def test_ms_to_iso(ms: int, iso: str) -> None:
    assert ms_to_iso(ms) == iso


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("", True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/problem+json", True),
        ("application/octet-stream", False),
        ("text/plain", False),
    ],
)
def test_json_media_types(content_type: str, expected: bool) -> None:
    assert is_json_media_type(content_type) is expected


def test_splice_json_keeps_value_bytes() -> None:
    spliced = splice_json({"a": 'x"y'}, "output", b"[1, 2.50]")
    assert spliced == b'{"a":"x\\"y","output":[1, 2.50]}'
    assert orjson.loads(spliced) == {"a": 'x"y', "output": [1, 2.5]}


def test_summary_of_endpoint_spec_without_mode_is_endpoint() -> None:
    spec = types_pb2.FunctionSpec(
        name="e", image="i", endpoint_url="http://x", created_at_ms=5, concurrency=4
    )
    summary = summary_to_json(spec)
    assert summary == {
        "name": "e",
        "image": "i",
        "concurrency": 4,
        "executionMode": "ENDPOINT",
        "createdAt": "1970-01-01T00:00:00.005Z",
    }


def test_json_log_line_has_required_keys_and_extras() -> None:
    record = logging.LogRecord("nanofaas_gateway", logging.WARNING, __file__, 1, "slow %s", ("call",), None)
    record.executionId = "e-1"
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["service"] == "gateway"
    assert entry["msg"] == "slow call"
    assert entry["executionId"] == "e-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_log_timestamps_are_utc_with_milliseconds_and_z() -> None:
    assert format_timestamp(1_714_564_800.123) == "2024-05-01T12:00:00.123Z"
    assert format_timestamp(1_714_564_800.9996) == "2024-05-01T12:00:00.999Z"  # the ms it falls in
    assert format_timestamp(0.0) == "1970-01-01T00:00:00.000Z"


def test_codes_are_the_contracts_enum_names() -> None:
    names = {name.removeprefix("ERROR_CODE_") for name, _ in types_pb2.ErrorCode.items()} - {"UNSPECIFIED"}
    assert names == codes.ALL_CODES
    assert codes.NOT_FOUND == "NOT_FOUND"
    assert codes.code_name(types_pb2.ERROR_CODE_INVALID_ARGUMENT) == "INVALID_ARGUMENT"


def test_no_error_code_is_spelled_outside_codes_py() -> None:
    """Every code the gateway writes comes from the enum (codes.py), never a free-standing string."""
    package = Path(nanofaas_gateway.__file__).parent
    spelled = []
    for path in package.rglob("*.py"):
        if path.name == "codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in codes.ALL_CODES:
                spelled.append(f"{path.relative_to(package)}:{node.lineno} {node.value}")
    assert spelled == []


@pytest.mark.parametrize(
    ("value", "clamped"),
    [(0, 0), (-5, -5), (INT64_MAX, INT64_MAX), (INT64_MAX + 1, INT64_MAX), (-(2**70), INT64_MIN)],
)
def test_clamp_int64(value: int, clamped: int) -> None:
    assert clamp_int64(value) == clamped


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("42", 42),
        ("-42", -42),
        ("+7", 7),
        ("0009", 9),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MAX + 1), INT64_MAX),
        ("-" + "0" * 30 + "1", -1),
        ("9" * 5000, INT64_MAX),
        ("-" + "9" * 5000, INT64_MIN),
    ],
)
def test_int64_from_literal_never_converts_what_cannot_fit(literal: str, value: int) -> None:
    assert int64_from_literal(literal) == value


def test_loads_clamped_clamps_integers_only() -> None:
    document = loads_clamped(
        b'{"a": ' + b"9" * 5000 + b', "b": [1, -' + str(2**70).encode() + b'], "c": 1.5}'
    )
    assert document == {"a": INT64_MAX, "b": [1, INT64_MIN], "c": 1.5}


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://hooks.example:8443/t/secret-token?sig=abc", "https://hooks.example:8443"),
        ("http://user:pass@host/x", "http://host"),
        ("not a url", "<invalid URL>"),
    ],
)
def test_logged_callback_targets_show_only_the_origin(url: str, origin: str) -> None:
    assert url_origin(url) == origin
