"""Watches through ``kubernetes.watch.Watch``: replay, resume by resourceVersion, 410, selectors."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from fakekube import FakeCluster

from .conftest import http


def _events(stream: Iterator[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    seen = []
    for event in stream:
        seen.append((event["type"], event["raw_object"]["metadata"].get("name", "")))
        if len(seen) == count:
            break
    return seen


def test_watch_replays_then_streams(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, "default", timeout_seconds=10)
    assert _events(stream, 1) == [("ADDED", "before")]
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    core.patch_namespaced_config_map("after", "default", {"data": {"a": "b"}})
    core.delete_namespaced_config_map("after", "default")
    assert _events(stream, 3) == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
    w.stop()


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api) -> None:
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "two"}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=10,
    )
    # Only what happened after the list: no replay of existing objects.
    assert _events(stream, 2) == [("ADDED", "one"), ("ADDED", "two")]


def test_too_old_resource_version_is_410(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    old = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    fake_cluster.compact()
    with pytest.raises(ApiException) as expired:
        # timeout_seconds disables the client's single automatic retry after a 410.
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=5
        ):
            raise AssertionError("an event arrived from a compacted version")
    assert expired.value.status == 410
    code, body = http(
        fake_cluster, "GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}"
    )
    assert code == 200 and body["type"] == "ERROR" and body["object"]["code"] == 410


def test_small_history_expires_old_versions(tmp_path: Any) -> None:
    with FakeCluster(history_size=3, work_dir=tmp_path / "c") as cluster:
        core = client.CoreV1Api(_client(cluster))
        old = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        _, body = http(cluster, "GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}")
        assert body["object"]["code"] == 410 and "too old resource version" in body["object"]["message"]


def _client(cluster: FakeCluster) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def test_label_selector_watch_sees_objects_leave(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "m", "labels": {"app": "a"}}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, "default", label_selector="app=a", timeout_seconds=10
    )
    assert _events(stream, 1) == [("ADDED", "m")]
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "b"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "other", "labels": {"app": "b"}}})
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "a"}}})
    assert _events(stream, 2) == [("DELETED", "m"), ("ADDED", "m")]


def test_bookmarks_and_initial_events_end(tmp_path: Any) -> None:
    with FakeCluster(bookmark_interval=0.2, work_dir=tmp_path / "c") as cluster:
        core = client.CoreV1Api(_client(cluster))
        core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        types = []
        for event in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            allow_watch_bookmarks=True,
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            timeout_seconds=5,
        ):
            types.append(event["type"])
            if event["type"] == "BOOKMARK":
                annotations = event["raw_object"]["metadata"].get("annotations") or {}
                assert annotations.get("k8s.io/initial-events-end") == "true"
                break
        assert types == ["ADDED", "BOOKMARK"]


def test_dropped_watch_resumes_without_losing_events(
    fake_cluster: FakeCluster, core: client.CoreV1Api
) -> None:
    listed = core.list_namespaced_config_map("default")
    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map, "default", resource_version=listed.metadata.resource_version
    )
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert _events(stream, 1) == [("ADDED", "a")]
    # Drop the stream, then write while no watch is open: the client re-watches from its last version.
    done = threading.Event()

    def writer() -> None:
        assert fake_cluster.drop_watches() == 1
        core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
        done.set()

    threading.Thread(target=writer).start()
    assert _events(stream, 1) == [("ADDED", "b")]
    assert done.wait(10)
    w.stop()
