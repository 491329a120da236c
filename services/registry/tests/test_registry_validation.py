"""Every validation rule, default and alias of FunctionSpec."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nanofaas.v1 import types_pb2
from nanofaas_registry.validation import SpecValidationError, limits, normalize_spec

SpecFactory = Callable[..., types_pb2.FunctionSpec]


def rejected(spec: types_pb2.FunctionSpec) -> str:
    with pytest.raises(SpecValidationError) as info:
        normalize_spec(spec)
    return str(info.value)


def test_minimal_spec_gets_every_default(make_spec: SpecFactory) -> None:
    result = normalize_spec(make_spec("fn"))
    assert result.timeout_ms == 30_000
    assert result.concurrency == 4
    assert result.queue_size == 100
    assert result.max_retries == 3
    assert result.execution_mode == types_pb2.EXECUTION_MODE_JOB
    assert result.runtime_mode == types_pb2.RUNTIME_MODE_HTTP
    assert list(result.command) == []
    assert result.runtime_command == ""
    assert dict(result.env) == {}
    assert not result.HasField("resources")
    for field in ("timeout_ms", "concurrency", "queue_size", "max_retries"):
        assert result.HasField(field)


def test_input_is_not_modified(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode_alias="POOL")
    normalize_spec(spec)
    assert not spec.HasField("timeout_ms")
    assert spec.execution_mode_alias == "POOL"


def test_given_values_are_kept(make_spec: SpecFactory) -> None:
    spec = make_spec(
        "fn",
        timeout_ms=1,
        concurrency=10_000,
        queue_size=1_000_000,
        max_retries=0,
        execution_mode=types_pb2.EXECUTION_MODE_WARM,
        runtime_mode=types_pb2.RUNTIME_MODE_STDIO,
        command=["python", "-m", "app"],
        env={"A": "1", "B": ""},
        resources=types_pb2.Resources(cpu="500m", memory="128Mi"),
    )
    result = normalize_spec(spec)
    assert (result.timeout_ms, result.concurrency, result.queue_size, result.max_retries) == (
        1,
        10_000,
        1_000_000,
        0,
    )
    assert result.execution_mode == types_pb2.EXECUTION_MODE_WARM
    assert result.runtime_mode == types_pb2.RUNTIME_MODE_STDIO
    assert list(result.command) == ["python", "-m", "app"]
    assert dict(result.env) == {"A": "1", "B": ""}
    assert (result.resources.cpu, result.resources.memory) == ("500m", "128Mi")


def test_registry_owned_fields_are_cleared(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", created_at_ms=5, updated_at_ms=6, revision=7)
    result = normalize_spec(spec)
    assert (result.created_at_ms, result.updated_at_ms, result.revision) == (0, 0, 0)


@pytest.mark.parametrize("name", ["a", "A1", "my-fn", "my_fn.v2", "x" * 63, "a-b.c_d"])
def test_valid_names(name: str, make_spec: SpecFactory) -> None:
    assert normalize_spec(make_spec(name)).name == name


def test_name_is_required(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("")) == "name: required"


@pytest.mark.parametrize("name", ["1abc", "-a", "_a", ".a", "a b", "a/b", "x" * 64, "é", "a\0"])
def test_invalid_names(name: str, make_spec: SpecFactory) -> None:
    assert rejected(make_spec(name)).startswith("name: must match ^[a-zA-Z][a-zA-Z0-9._-]{0,62}$")


@pytest.mark.parametrize("image", ["", "   "])
def test_image_is_required(image: str) -> None:
    assert rejected(types_pb2.FunctionSpec(name="fn", image=image)) == "image: required"


def test_image_without_whitespace() -> None:
    assert rejected(types_pb2.FunctionSpec(name="fn", image="a b")).startswith("image: ")


def test_command_rejects_empty_entries(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", command=["python", ""])) == "command: entry 1 must not be empty"


def test_command_rejects_nul(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", command=["py\0thon"])) == "command: entry 0 must not contain NUL"


def test_runtime_command_is_kept_as_given(make_spec: SpecFactory) -> None:
    result = normalize_spec(make_spec("fn", runtime_command="python -c 'print(1)'"))
    assert result.runtime_command == "python -c 'print(1)'"
    assert list(result.command) == []


@pytest.mark.parametrize("text", ["python -c 'unbalanced", 'echo "open', "trailing \\"])
def test_runtime_command_unbalanced_quotes(text: str, make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", runtime_command=text)).startswith("runtimeCommand: ")


def test_runtime_command_cannot_be_blank(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", runtime_command="   ")) == "runtimeCommand: must name a program"


def test_runtime_command_rejects_nul(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", runtime_command="a\0b")) == "runtimeCommand: must not contain NUL"


def test_runtime_command_and_command_are_exclusive(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", command=["python"], runtime_command="python")
    assert rejected(spec) == "runtimeCommand: cannot be combined with command"


def test_env_key_must_not_be_empty(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", env={"": "x"})) == "env: keys must not be empty"


def test_env_key_without_equals(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", env={"A=B": "x"})) == "env: key 'A=B' must not contain '='"


def test_env_key_without_nul(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", env={"A\0": "x"})).startswith("env: key ")


def test_env_value_without_nul(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", env={"A": "x\0y"})) == "env: value of 'A' must not contain NUL"


@pytest.mark.parametrize("quantity", ["500m", "1", "0.5", "128Mi", "1Gi", "1G", "2k", "1e3", ".5", "100n"])
def test_valid_quantities(quantity: str, make_spec: SpecFactory) -> None:
    spec = make_spec("fn", resources=types_pb2.Resources(cpu=quantity, memory=quantity))
    assert normalize_spec(spec).resources.cpu == quantity


@pytest.mark.parametrize("quantity", ["lots", "-1", "1 Gi", "1gi", "Mi", "1.2.3", "1Xi", "0x10"])
@pytest.mark.parametrize("field", ["cpu", "memory"])
def test_invalid_quantities(field: str, quantity: str, make_spec: SpecFactory) -> None:
    spec = make_spec("fn", resources=types_pb2.Resources(**{field: quantity}))
    assert rejected(spec).startswith(f"resources.{field}: ")


def test_empty_resources_are_allowed(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", resources=types_pb2.Resources(cpu="", memory="1Gi"))
    assert normalize_spec(spec).resources.memory == "1Gi"


@pytest.mark.parametrize(
    ("field", "rest", "bad", "message"),
    [
        ("timeout_ms", "timeoutMs", 0, "must be between 1 and 300000"),
        ("timeout_ms", "timeoutMs", 300_001, "must be between 1 and 300000"),
        ("concurrency", "concurrency", 0, "must be between 1 and 10000"),
        ("concurrency", "concurrency", 10_001, "must be between 1 and 10000"),
        ("queue_size", "queueSize", 0, "must be between 1 and 1000000"),
        ("queue_size", "queueSize", 1_000_001, "must be between 1 and 1000000"),
        ("max_retries", "maxRetries", 101, "must be between 0 and 100"),
    ],
)
def test_numeric_bounds(field: str, rest: str, bad: int, message: str, make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", **{field: bad})) == f"{rest}: {message}"


@pytest.mark.parametrize(
    ("field", "rest", "message"),
    [
        ("timeout_ms", "timeoutMs", "must be between 1 and 300000"),
        ("concurrency", "concurrency", "must be between 1 and 10000"),
        ("queue_size", "queueSize", "must be between 1 and 1000000"),
        ("max_retries", "maxRetries", "must be between 0 and 100"),
    ],
)
def test_numeric_bounds_answer_the_same_whatever_the_size(
    field: str, rest: str, message: str, make_spec: SpecFactory
) -> None:
    """Any int64 (the gateway clamps bigger ones) outside the range gets one and the same answer."""
    for bad in (-1, -(2**31), 2**32, 2**40, 2**63 - 1, -(2**63)):
        assert rejected(make_spec("fn", **{field: bad})) == f"{rest}: {message}", bad


def test_limits_follow_the_bounds(make_spec: SpecFactory) -> None:
    largest = limits().max_timeout_ms
    assert normalize_spec(make_spec("fn", timeout_ms=largest)).timeout_ms == largest
    assert rejected(make_spec("fn", timeout_ms=largest + 1)).startswith("timeoutMs: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout_ms", 300_000), ("concurrency", 1), ("queue_size", 1), ("max_retries", 100)],
)
def test_numeric_bounds_are_inclusive(field: str, value: int, make_spec: SpecFactory) -> None:
    assert getattr(normalize_spec(make_spec("fn", **{field: value})), field) == value


def test_unspecified_mode_with_endpoint_becomes_endpoint(make_spec: SpecFactory) -> None:
    result = normalize_spec(make_spec("fn", endpoint_url="http://127.0.0.1:9000/invoke"))
    assert result.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT


def test_pool_alias_with_endpoint_becomes_endpoint(make_spec: SpecFactory) -> None:
    spec = make_spec(
        "fn",
        execution_mode=types_pb2.EXECUTION_MODE_WARM,
        execution_mode_alias="POOL",
        endpoint_url="https://fn.example.com/",
    )
    result = normalize_spec(spec)
    assert result.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT
    assert result.execution_mode_alias == ""


def test_pool_alias_without_endpoint_stays_warm(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_WARM, execution_mode_alias="POOL")
    result = normalize_spec(spec)
    assert result.execution_mode == types_pb2.EXECUTION_MODE_WARM
    assert result.execution_mode_alias == ""


def test_explicit_warm_with_endpoint_stays_warm(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_WARM, endpoint_url="http://127.0.0.1:1/")
    assert normalize_spec(spec).execution_mode == types_pb2.EXECUTION_MODE_WARM


def test_alias_alone_resolves_the_mode(make_spec: SpecFactory) -> None:
    assert normalize_spec(make_spec("fn", execution_mode_alias="pool")).execution_mode == (
        types_pb2.EXECUTION_MODE_WARM
    )
    remote = normalize_spec(make_spec("fn", execution_mode_alias="REMOTE"))
    assert remote.execution_mode == types_pb2.EXECUTION_MODE_JOB
    assert remote.execution_mode_alias == ""


def test_remote_alias_with_job_stays_job(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_JOB, execution_mode_alias="REMOTE")
    assert normalize_spec(spec).execution_mode == types_pb2.EXECUTION_MODE_JOB


def test_endpoint_mode_requires_url(make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_ENDPOINT)
    assert rejected(spec) == "endpointUrl: required for executionMode ENDPOINT"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "/relative/path",
        "http://",
        "http:///path",
        "localhost:8080",
        "http://a b/",
        "http://h:99999/",
        "http://a..b/",
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_invalid_endpoint_urls(url: str, make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_ENDPOINT, endpoint_url=url)
    assert rejected(spec).startswith("endpointUrl: ")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/invoke",
        "https://fn.example.com",
        "http://[::1]:80/",
        "http://\u00e9t\u00e9.example/",
    ],
)
def test_valid_endpoint_urls(url: str, make_spec: SpecFactory) -> None:
    spec = make_spec("fn", execution_mode=types_pb2.EXECUTION_MODE_ENDPOINT, endpoint_url=url)
    assert normalize_spec(spec).endpoint_url == url


def test_unknown_enum_values_are_rejected(make_spec: SpecFactory) -> None:
    assert rejected(make_spec("fn", execution_mode=42)) == "executionMode: unknown value 42"
    assert rejected(make_spec("fn", runtime_mode=42)) == "runtimeMode: unknown value 42"


@pytest.mark.parametrize(
    "mode", [types_pb2.RUNTIME_MODE_HTTP, types_pb2.RUNTIME_MODE_STDIO, types_pb2.RUNTIME_MODE_FILE]
)
def test_runtime_modes_are_kept(mode: types_pb2.RuntimeMode.ValueType, make_spec: SpecFactory) -> None:
    assert normalize_spec(make_spec("fn", runtime_mode=mode)).runtime_mode == mode


def test_error_carries_field_and_problem(make_spec: SpecFactory) -> None:
    with pytest.raises(SpecValidationError) as info:
        normalize_spec(make_spec("fn", timeout_ms=0))
    assert info.value.field == "timeoutMs"
    assert info.value.problem == "must be between 1 and 300000"


def test_rate_limit_is_optional_and_bounded(make_spec: SpecFactory) -> None:
    assert not normalize_spec(make_spec()).HasField("rate_limit_per_second")
    assert normalize_spec(make_spec(rate_limit_per_second=2.5)).rate_limit_per_second == 2.5
    assert normalize_spec(make_spec(rate_limit_per_second=0)).rate_limit_per_second == 0
    for bad in (-1.0, float("nan"), float("inf"), 1e7):
        assert rejected(make_spec(rate_limit_per_second=bad)).startswith("rateLimitPerSecond:")


def test_scaling_fields_get_their_defaults(make_spec: SpecFactory) -> None:
    spec = normalize_spec(make_spec(concurrency=6))
    assert (spec.min_replicas, spec.max_replicas, spec.target_in_flight, spec.scale_down_delay_ms) == (
        1,
        6,  # maxReplicas defaults to concurrency
        1,
        60_000,
    )


def test_scale_to_zero_and_explicit_scaling_fields_are_kept(make_spec: SpecFactory) -> None:
    fields = {"min_replicas": 0, "max_replicas": 3, "target_in_flight": 2, "scale_down_delay_ms": 0}
    spec = normalize_spec(make_spec(concurrency=6, **fields))
    assert spec.HasField("min_replicas") and spec.min_replicas == 0
    assert (spec.max_replicas, spec.target_in_flight, spec.scale_down_delay_ms) == (3, 2, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"min_replicas": -1}, "minReplicas"),
        ({"min_replicas": 5}, "minReplicas"),  # above concurrency 4
        ({"max_replicas": 0}, "maxReplicas"),
        ({"max_replicas": 5}, "maxReplicas"),  # the scheduler never runs more than concurrency at once
        ({"min_replicas": 3, "max_replicas": 2}, "minReplicas"),
        ({"target_in_flight": 0}, "targetInFlight"),
        ({"target_in_flight": 5}, "targetInFlight"),
        ({"scale_down_delay_ms": -1}, "scaleDownDelayMs"),
        ({"scale_down_delay_ms": 3_600_001}, "scaleDownDelayMs"),
        ({"max_replicas": 2**63 - 1}, "maxReplicas"),
    ],
)
def test_scaling_fields_out_of_bounds_are_rejected(
    make_spec: SpecFactory, fields: dict[str, int], field: str
) -> None:
    assert rejected(make_spec(concurrency=4, **fields)).startswith(f"{field}:")
