"""Shared fixtures: an official-client ApiClient bound to the per-test fake cluster."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from fakekube import FakeCluster

WEB = Path(__file__).parent / "programs" / "web.py"


@pytest.fixture
def cluster(fake_cluster: FakeCluster) -> FakeCluster:
    """The per-test cluster with the images these tests use mapped to local commands."""
    fake_cluster.add_image("python:3", [sys.executable])
    fake_cluster.add_image("web:1", [sys.executable, str(WEB)], env={"PORT": "8080"})
    fake_cluster.add_image("busybox:1")  # no entrypoint: the container's command runs as given
    return fake_cluster


@pytest.fixture
def api(fake_cluster: FakeCluster, fake_kubeconfig: Path) -> Iterator[client.ApiClient]:
    """What the scheduler's backend will hold: a client loaded from a kubeconfig file."""
    api_client = config.new_client_from_config(config_file=str(fake_kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def discovery(api: client.ApiClient) -> client.DiscoveryV1Api:
    return client.DiscoveryV1Api(api)


def raw(
    api: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str | None = None,
    query: list[tuple[str, str]] | None = None,
) -> tuple[int, Any]:
    """A request the typed client would refuse to build (it validates models): ``(status, JSON body)``."""
    headers = {"Content-Type": content_type} if content_type else None
    params = api.param_serialize(method, path, body=body, query_params=query or [], header_params=headers)
    response = api.call_api(*params)
    data = response.read()
    return response.status, json.loads(data) if data else None


def http(
    cluster: FakeCluster,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """A plain HTTP request (malformed bodies, odd content types): ``(status, JSON body or text)``."""
    request = urllib.request.Request(
        cluster.url + path,
        data=body,
        method=method,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {cluster.token_for('test')}"},
    )
    context = None
    if cluster.certificates is not None:
        context = ssl.create_default_context(cadata=cluster.certificates.ca_pem.decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data.decode()


def condition(obj: dict[str, Any] | None, kind: str, status: str = "True") -> bool:
    """Whether ``obj`` (a JSON object, or None) has ``kind`` condition at ``status``."""
    return obj is not None and any(
        c.get("type") == kind and c.get("status") == status
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


def finished(job: dict[str, Any] | None) -> bool:
    return condition(job, "Complete") or condition(job, "Failed")


def container_state(pod: dict[str, Any] | None, index: int = 0) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return statuses[index] if len(statuses) > index else {}


def get_json(url: str, method: str = "GET", timeout: float = 5) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
