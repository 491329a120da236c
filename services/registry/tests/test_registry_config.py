"""Settings from environment variables."""

from __future__ import annotations

import pytest

from nanofaas_registry.config import ConfigError, RegistrySettings


def test_defaults_outside_kubernetes() -> None:
    settings = RegistrySettings.from_env({})
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 9091, 9191)
    assert settings.log_level == "INFO"


def test_pod_default_host() -> None:
    assert RegistrySettings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).host == "0.0.0.0"


def test_overrides() -> None:
    settings = RegistrySettings.from_env(
        {
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "NANOFAAS_REGISTRY_HOST": "127.0.0.2",
            "NANOFAAS_REGISTRY_PORT": "1234",
            "NANOFAAS_REGISTRY_METRICS_PORT": "0",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.2", 1234, 0)
    assert settings.log_level == "debug"  # resolved (any case) by logging_setup


@pytest.mark.parametrize("value", ["abc", "-1", "65536"])
def test_invalid_port(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^NANOFAAS_REGISTRY_PORT: "):
        RegistrySettings.from_env({"NANOFAAS_REGISTRY_PORT": value})
