"""Spec and env size limits (docs/limits.md): permanent refusals, a 413 over REST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nanofaas.v1 import types_pb2
from nanofaas_registry import validation
from nanofaas_registry.config import ConfigError, RegistrySettings


@pytest.fixture
def small_limits() -> Iterator[None]:
    validation.configure_sizes(validation.SizeLimits(max_spec_bytes=2048, max_env_bytes=512))
    yield
    validation.configure_sizes(validation.SizeLimits())


def test_a_spec_over_the_limit_is_too_large(small_limits: None) -> None:
    spec = types_pb2.FunctionSpec(name="big", image="i", command=["x" * 3000])
    with pytest.raises(
        validation.SpecTooLargeError, match=r"^spec: \d+ bytes exceeds the limit of 2048 bytes"
    ):
        validation.normalize_spec(spec)


def test_env_over_the_limit_is_refused_naming_env(small_limits: None) -> None:
    spec = types_pb2.FunctionSpec(name="env", image="i", env={"A": "v" * 600})
    with pytest.raises(
        validation.SpecValidationError, match=r"^env: keys and values exceed 512 bytes"
    ) as caught:
        validation.normalize_spec(spec)
    assert not isinstance(caught.value, validation.SpecTooLargeError)


def test_specs_within_the_limits_pass(small_limits: None) -> None:
    assert (
        validation.normalize_spec(types_pb2.FunctionSpec(name="ok", image="i", env={"A": "v"})).name == "ok"
    )


def test_limits_come_from_the_environment() -> None:
    settings = RegistrySettings.from_env({"NANOFAAS_MAX_SPEC_BYTES": "4096", "NANOFAAS_MAX_ENV_BYTES": "0"})
    assert (settings.max_spec_bytes, settings.max_env_bytes) == (4096, 0)
    with pytest.raises(ConfigError, match="NANOFAAS_MAX_SPEC_BYTES"):
        RegistrySettings.from_env({"NANOFAAS_MAX_SPEC_BYTES": str(64 * 1024 * 1024)})
