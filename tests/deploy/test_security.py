"""What the rendered overlays must hold for docs/security.md: who can reach which port, with what.

The gRPC APIs listen on 127.0.0.1 inside the pod (the services' default); the one listener
outside the pod is on the pod IP and authenticated. The cluster overlays turn API
authentication on, with the tokens from a Secret mounted as a file (so rotation needs no
restart: a Secret volume is updated in place, a subPath mount or an env var would not be).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from .conftest import OVERLAYS, Manifest, config_data, control_plane

CLUSTER_OVERLAYS = ("cluster", "cluster-split")


def containers(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in control_plane(objects)["spec"]["template"]["spec"]["containers"]}


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_grpc_apis_stay_on_localhost_but_for_the_pod_ip_listener(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = {**config_data(objects, "nanofaas-common"), **config_data(objects, "nanofaas-scheduler")}
    settings |= config_data(objects, "nanofaas-registry")
    for name in ("scheduler", "registry"):
        assert settings.get(f"NANOFAAS_{name.upper()}_HOST", "127.0.0.1") == "127.0.0.1"
        env = {e["name"]: e for e in containers(objects)[name]["env"]}
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env[f"NANOFAAS_{name.upper()}_EXTERNAL_HOST"]["value"] == "$(POD_IP)"
        names = [e["name"] for e in containers(objects)[name]["env"]]
        assert names.index("POD_IP") < names.index(
            f"NANOFAAS_{name.upper()}_EXTERNAL_HOST"
        )  # expansion order


@pytest.mark.parametrize("overlay", CLUSTER_OVERLAYS)
def test_the_cluster_turns_api_authentication_on_from_a_secret_file(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    objects = rendered[overlay]
    path = PurePosixPath(config_data(objects, "nanofaas-common")["NANOFAAS_API_TOKENS_FILE"])
    pod = control_plane(objects)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-tokens")
    assert volume["secret"]["secretName"] == "nanofaas-api-tokens"
    assert {item["path"] for item in volume["secret"]["items"]} == {path.name}
    assert not volume["secret"].get("optional", False)  # no unauthenticated fallback
    for name, container in containers(objects).items():
        mount = next(m for m in container["volumeMounts"] if m["name"] == "api-tokens")
        assert PurePosixPath(mount["mountPath"]) == path.parent, name
        assert mount.get("readOnly") is True
        assert "subPath" not in mount  # a subPath mount is never updated: rotation would need a restart
    # The tokens are never in a manifest (only a reference to the Secret the operator creates).
    assert not [
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "nanofaas-api-tokens"
    ]


def test_the_kind_overlay_leaves_authentication_off(rendered: dict[str, list[Manifest]]) -> None:
    assert "NANOFAAS_API_TOKENS_FILE" not in config_data(rendered["kind"], "nanofaas-common")
