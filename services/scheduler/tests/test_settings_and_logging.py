"""Settings from the environment and JSON log lines, as every nanofaas service has them.

The same cases run against the gateway's, registry's and runtime's own copies in their
suites; tests/e2e/test_conformance.py checks the processes side by side.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.logging_setup import configure_logging, format_timestamp


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines into a buffer, restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_settings_defaults_and_overrides() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "NANOFAAS_SCHEDULER_PORT": "0",
            "NANOFAAS_MAX_PER_SECOND": "2.5",
            "NANOFAAS_MAX_EXECUTIONS": " 10 ",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.port, settings.max_per_second, settings.max_executions) == (0, 2.5, 10)
    assert settings.log_level == "debug"
    # In a pod the gRPC API stays on localhost (docs/security.md); metrics are for Prometheus.
    in_pod = Settings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert (in_pod.host, in_pod.metrics_host, in_pod.external_host) == ("127.0.0.1", "0.0.0.0", "")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NANOFAAS_SCHEDULER_PORT", "abc", "must be an integer between 0 and 65535 (got 'abc')"),
        ("NANOFAAS_SCHEDULER_PORT", "65536", "must be an integer between 0 and 65535 (got '65536')"),
        ("NANOFAAS_SCHEDULER_METRICS_PORT", "-1", "must be an integer between 0 and 65535 (got '-1')"),
        ("NANOFAAS_MAX_EXECUTIONS", "0", "must be an integer between 1 and 2147483647 (got '0')"),
        ("NANOFAAS_EXECUTION_TTL_S", "soon", "must be a number of at least 0 (got 'soon')"),
        ("NANOFAAS_SHUTDOWN_GRACE_S", "nan", "must be a number of at least 0 (got 'nan')"),
        ("NANOFAAS_MAX_PER_SECOND", "-1", "must be a number of at least 0 (got '-1')"),
    ],
)
def test_bad_settings_name_the_variable_and_the_value(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == f"{name}: {message}"


def test_timestamps_keep_the_millisecond_float_error_would_lose() -> None:
    assert format_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_795_773_600.123) == "2026-11-27T10:00:00.123Z"  # stored as .12299999...
    assert format_timestamp(1_795_773_600.1239) == "2026-11-27T10:00:00.123Z"  # the ms it falls in


def test_unknown_level_falls_back_to_info_with_one_warning(log_stream: io.StringIO) -> None:
    assert configure_logging("verbose", log_stream) == logging.INFO
    log = logging.getLogger("nanofaas_scheduler.test")
    log.debug("hidden")
    log.info("shown")
    warning, shown = lines(log_stream)
    assert (warning["level"], warning["logLevel"]) == ("WARNING", "verbose")
    assert "'verbose'" in str(warning["msg"]) and "INFO" in str(warning["msg"])
    assert shown["msg"] == "shown"


@pytest.mark.parametrize(("given", "level"), [("", logging.INFO), ("Error", logging.ERROR), (" debug ", 10)])
def test_known_levels_in_any_case(log_stream: io.StringIO, given: str, level: int) -> None:
    assert configure_logging(given, log_stream) == level
    assert log_stream.getvalue() == ""


def test_line_shape_extras_and_span_ids(log_stream: io.StringIO) -> None:
    configure_logging("INFO", log_stream)
    log = logging.getLogger("nanofaas_scheduler.test")
    log.info("outside %s", "a span", extra={"executionId": "e-1", "service": "not replaced"})
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        log.info("inside a span")
        log.info("another trace", extra={"traceId": "0af7651916cd43dd8448eb211c80319c"})
    outside, inside, foreign = lines(log_stream)
    assert list(outside) == ["ts", "level", "service", "msg", "logger", "executionId"]
    assert (outside["service"], outside["msg"]) == ("scheduler", "outside a span")
    context = span.get_span_context()
    assert (inside["traceId"], inside["spanId"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert foreign["traceId"] == "0af7651916cd43dd8448eb211c80319c" and "spanId" not in foreign


def test_an_unknown_backend_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigError, match=r"NANOFAAS_BACKEND: must be one of local, kubernetes \(got 'k8s'\)"
    ):
        Settings.from_env({"NANOFAAS_BACKEND": "k8s"})
