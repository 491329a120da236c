"""Settings from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanofaas_registry.config import ConfigError, RegistrySettings, default_data_dir


def test_defaults_outside_kubernetes() -> None:
    settings = RegistrySettings.from_env({})
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 9091, 9191)
    assert settings.log_level == "INFO"


def test_pod_default_host() -> None:
    # The gRPC API stays on localhost in a pod (docs/security.md); metrics are for Prometheus.
    in_pod = RegistrySettings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert (in_pod.host, in_pod.metrics_host, in_pod.external_host) == ("127.0.0.1", "0.0.0.0", "")


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


def test_store_defaults_to_memory_and_accepts_any_case() -> None:
    assert RegistrySettings.from_env({}).store == "memory"
    assert RegistrySettings.from_env({"NANOFAAS_REGISTRY_STORE": " SQLite "}).store == "sqlite"


def test_unknown_store_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^NANOFAAS_REGISTRY_STORE: must be one of memory, sqlite, kubernetes \(got 'etcd'\)$",
    ):
        RegistrySettings.from_env({"NANOFAAS_REGISTRY_STORE": "etcd"})


def test_data_dir_from_env_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir({}) == tmp_path / "home" / ".local" / "share" / "nanofaas"
    assert default_data_dir({"XDG_DATA_HOME": "relative/ignored"}) == default_data_dir({})
    assert default_data_dir({"XDG_DATA_HOME": "/xdg"}) == Path("/xdg/nanofaas")
    assert (
        default_data_dir({"XDG_DATA_HOME": "/xdg", "NANOFAAS_DATA_DIR": "~/nf"}) == tmp_path / "home" / "nf"
    )
    assert RegistrySettings.from_env({"NANOFAAS_DATA_DIR": "/data"}).data_dir == Path("/data")
