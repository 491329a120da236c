"""A list-then-watch loop of one resource, in its own thread, delivering events to the event loop.

It lists (the whole current state, delivered as one SYNC), then watches from
that list's resourceVersion; every event advances the version, so a dropped
connection resumes where it stopped. A 410 Gone (the version was compacted
away) means events were lost: it lists again, and the SYNC lets the consumer
notice objects that vanished meanwhile. API errors back off, up to a bound
between tries, and never stop the loop; stop() ends it promptly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from nanofaas_scheduler.dispatch.kubernetes.api import ApiError, JsonObject, KubeApi, Resource

log = logging.getLogger(__name__)

SYNC = "SYNC"
EventSink = Callable[[str, Any], None]  # ("ADDED" | "MODIFIED" | "DELETED", obj) or (SYNC, [objs])


class Watcher:
    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        namespace: str,
        selector: str,
        sink: EventSink,
        *,
        watch_timeout_s: int = 60,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._api = api
        self._resource = resource
        self._namespace = namespace
        self._selector = selector
        self._sink = sink
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._response: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"kube-watch-{self._resource.plural}", daemon=True
        )
        self._thread.start()

    def _deliver(self, kind: str, obj: Any) -> None:
        loop = self._loop
        if loop is None or self._stop.is_set():
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, kind, obj)
        except RuntimeError:  # the loop closed
            self._stop.set()

    def _dispatch(self, kind: str, obj: Any) -> None:
        if self._stop.is_set():
            return
        try:
            self._sink(kind, obj)
        except Exception:
            log.exception("kubernetes watch event handler failed", extra={"resource": self._resource.plural})

    def _run(self) -> None:
        backoff = 0.1
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                backoff = 0.1
            except ApiError as exc:
                if exc.status == 410:
                    version = ""  # compacted: list again
                    continue
                if self._stop.is_set():
                    return
                log.warning(
                    "kubernetes watch failed, retrying",
                    extra={"resource": self._resource.plural, "error": str(exc), "in_s": backoff},
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    def _list(self) -> str:
        path = self._resource.path(self._namespace)
        listed = self._api.request_retried(
            "GET", "list", self._resource, path, query={"labelSelector": self._selector}
        )
        self._deliver(SYNC, listed.get("items") or [])
        return str((listed.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, version: str) -> str:
        """One watch request; returns the version to resume from when it ends cleanly."""
        query: dict[str, str | int | bool] = {
            "labelSelector": self._selector,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self._watch_timeout_s,
        }
        response = self._api.request(
            "GET",
            "watch",
            self._resource,
            self._resource.path(self._namespace),
            query=query,
            timeout=self._watch_timeout_s + 10,
            stream=True,
        )
        self._response = response
        buffer = b""
        try:
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._event(json.loads(line), version)
        except ApiError:
            raise
        except Exception as exc:
            if self._stop.is_set():
                return version
            raise ApiError(0, type(exc).__name__, f"watch connection lost: {exc}") from exc
        finally:
            self._response = None
            response.release_conn()
        return version

    def _event(self, event: JsonObject, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise ApiError(int(obj.get("code", 0)), str(obj.get("reason", "")), str(obj.get("message", "")))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion", "")) or version
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._deliver(str(kind), obj)
        return new_version

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already released, or no socket: the watch timeout ends it
                log.debug("watch response not shut down", exc_info=True)
