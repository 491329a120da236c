"""The Kubernetes FunctionStore: every function is a `Function` object (functions.nanofaas.io/v1).

Why it looks like this:

- The objects are the truth, so `kubectl apply`/`delete` and GitOps tools manage functions. The
  store follows them with a list + watch on a thread of its own (the official client blocks) and
  hands every real spec change to the registry as an ExternalChange; the registry gives it a
  revision and announces it like an API change. A REST change is written back as the object's
  spec. Writes of our own come back through the watch and are recognised by content (and stale
  events by the object's generation), so they are not adopted twice.
- Revisions must never go backwards, also across restarts and deletions, so the last one handed
  out is kept in a ConfigMap (`nanofaas-registry-revision`), written before the object it
  belongs to; a gap after a failed write is harmless, a reuse would not be.
- Each object's status tells whether it is served: `observedRevision`, `observedGeneration` and a
  `Ready` condition (reason Served, or InvalidSpec with the message naming the field). An invalid
  object is never served; if it replaces a valid spec, the last valid one stays served and the
  condition says why the new one is not.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from nanofaas.v1 import types_pb2
from nanofaas_registry.manifest import manifest_from_spec, spec_from_manifest
from nanofaas_registry.store.base import ExternalChange, ReadsFromMemory, StoreError, copy_spec, same_content
from nanofaas_registry.validation import SpecValidationError, normalize_spec

logger = logging.getLogger(__name__)

GROUP = "nanofaas.io"
VERSION = "v1"
PLURAL = "functions"
KIND = "Function"
REVISION_CONFIGMAP = "nanofaas-registry-revision"
CREATED_ANNOTATION = "nanofaas.io/created-at-ms"
UPDATED_ANNOTATION = "nanofaas.io/updated-at-ms"
# A Kubernetes object name (DNS-1123 subdomain); stricter than a function name.
OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Seconds a watch request lasts before it is renewed (so close() is never waited on for long).
WATCH_TIMEOUT_S = 5


def api_client(*, in_cluster: bool) -> client.ApiClient:
    """A client with the pod's service account, or the kubeconfig's current context; StoreError if neither."""
    try:
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        created: client.ApiClient = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return created
    except (ConfigException, OSError) as exc:
        raise StoreError(f"cannot reach Kubernetes: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the store last knew of an object: its identity, generation and spec as a FunctionSpec."""

    uid: str
    generation: int
    spec: types_pb2.FunctionSpec | None  # None: the object's spec is invalid
    problem: str = ""


class KubernetesFunctionStore(ReadsFromMemory):
    """Create it with `await KubernetesFunctionStore.open(api_client, namespace)`."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self._api_client = api_client
        self._objects = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._specs: dict[str, types_pb2.FunctionSpec] = {}
        self._seen: dict[str, _Seen] = {}
        self._revision = 0
        self._pending: builtins.list[ExternalChange] = []
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revision_version: str | None = None  # the revision ConfigMap's resourceVersion

    @classmethod
    async def open(cls, api_client: client.ApiClient, namespace: str) -> KubernetesFunctionStore:
        """Loads every Function of the namespace and starts following them; raises StoreError."""
        store = cls(api_client, namespace)
        try:
            await store._load()
        except ApiException as exc:
            hint = f" (is the CRD {PLURAL}.{GROUP} installed?)" if exc.status == 404 else ""
            raise StoreError(
                f"cannot read Function objects in namespace {namespace!r}: {_reason(exc)}{hint}"
            ) from exc
        return store

    async def put(self, spec: types_pb2.FunctionSpec) -> None:
        if not OBJECT_NAME.fullmatch(spec.name):
            raise SpecValidationError(
                "name", "must be a lower-case DNS name (a-z, 0-9, '-', '.') to be stored as a Function object"
            )
        stored = copy_spec(spec)
        await self._save_revision(max(self._revision, stored.revision))
        seen = self._seen.get(stored.name)
        try:
            if seen is None or seen.spec is None or not same_content(seen.spec, stored):
                body = await self._write_object(stored, exists=seen is not None)
            else:  # the object already says this (a kubectl change being adopted): keep its spec as written
                body = await self._call(
                    self._objects.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    stored.name,
                    {"metadata": {"annotations": _timestamps(stored)}},
                )
            metadata = body["metadata"]
            self._seen[stored.name] = _Seen(metadata["uid"], int(metadata.get("generation", 1)), stored)
            await self._write_status(body, ready=True, reason="Served", message="", revision=stored.revision)
        except ApiException as exc:
            raise StoreError(f"cannot write Function {stored.name!r}: {_reason(exc)}") from exc
        self._specs[stored.name] = stored
        self._revision = max(self._revision, stored.revision)

    async def delete(self, name: str, revision: int) -> bool:
        if name not in self._specs:
            return False
        await self._save_revision(max(self._revision, revision))
        try:
            await self._call(
                self._objects.delete_namespaced_custom_object, GROUP, VERSION, self._namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise StoreError(f"cannot delete Function {name!r}: {_reason(exc)}") from exc
        del self._specs[name]
        self._seen.pop(name, None)
        self._revision = max(self._revision, revision)
        return True

    def external_changes(self) -> AsyncIterator[ExternalChange]:
        return self._changes()

    async def close(self) -> None:
        # The watch thread notices within WATCH_TIMEOUT_S (errors from the closed client included);
        # it is a daemon, so nothing waits for it.
        self._stopping.set()
        await asyncio.to_thread(self._api_client.close)

    # -- loading and following ------------------------------------------------------------

    async def _load(self) -> None:
        self._loop = asyncio.get_running_loop()
        stored_revision = await self._read_revision()
        listing = await self._call(
            self._objects.list_namespaced_custom_object, GROUP, VERSION, self._namespace, PLURAL
        )
        revision = stored_revision
        for body in listing.get("items", []):
            name = body["metadata"]["name"]
            status = body.get("status") or {}
            revision = max(revision, int(status.get("observedRevision") or 0))
            seen = _inspect(body)
            self._seen[name] = seen
            if seen.spec is None:
                logger.error(
                    "Function object not served", extra={"functionName": name, "reason": seen.problem}
                )
                await self._report_invalid(body, seen.problem)
                continue
            generation = int(body["metadata"].get("generation", 1))
            if status.get("observedGeneration") == generation and status.get("observedRevision"):
                served = copy_spec(seen.spec)
                served.revision = int(status["observedRevision"])
                annotations = body["metadata"].get("annotations") or {}
                served.created_at_ms = int(annotations.get(CREATED_ANNOTATION) or 0)
                served.updated_at_ms = int(annotations.get(UPDATED_ANNOTATION) or served.created_at_ms)
                self._specs[name] = served
            else:  # created or changed while no registry was watching: adopt it at a new revision
                self._pending.append(ExternalChange(name, seen.spec))
        self._revision = revision
        resource_version = listing["metadata"]["resourceVersion"]
        self._watcher = threading.Thread(
            target=self._watch, args=(resource_version,), name="registry-function-watch", daemon=True
        )
        self._watcher.start()
        logger.info(
            "function store opened",
            extra={"namespace": self._namespace, "functions": len(self._specs), "revision": revision},
        )

    async def _changes(self) -> AsyncIterator[ExternalChange]:
        for change in self._pending:
            yield change
        self._pending.clear()
        while True:
            kind, body = await self._events.get()
            if kind == "RELIST":
                for change in await self._relisted(body):
                    yield change
                continue
            adopted = await self._change_of(kind, body)
            if adopted is not None:
                yield adopted

    async def _change_of(self, kind: str, body: dict[str, Any]) -> ExternalChange | None:
        """The ExternalChange an object event means, or None (our own write, a stale event, status)."""
        name = body["metadata"]["name"]
        if kind == "DELETED":
            seen = self._seen.get(name)
            if seen is not None and seen.uid != body["metadata"].get("uid"):
                return None  # an older incarnation; the current object still exists
            self._seen.pop(name, None)
            return ExternalChange(name, None) if name in self._specs else None
        current = self._seen.get(name)
        seen = _inspect(body)
        if current is not None and current.uid == seen.uid and seen.generation < current.generation:
            return None  # stale: we already wrote (or saw) a newer generation
        self._seen[name] = seen
        if seen.spec is None:
            if current is None or current.problem != seen.problem or current.generation != seen.generation:
                logger.error(
                    "Function object not served", extra={"functionName": name, "reason": seen.problem}
                )
                await self._report_invalid(body, seen.problem)
            return None
        served = self._specs.get(name)
        if served is not None and same_content(served, seen.spec):
            return None
        return ExternalChange(name, seen.spec)

    async def _relisted(self, listing: dict[str, Any]) -> builtins.list[ExternalChange]:
        """After the watch lost its place: every difference between the objects and what is served."""
        changes: builtins.list[ExternalChange] = []
        present = set()
        for body in listing.get("items", []):
            present.add(body["metadata"]["name"])
            change = await self._change_of("MODIFIED", body)
            if change is not None:
                changes.append(change)
        changes.extend(ExternalChange(name, None) for name in sorted(self._specs.keys() - present))
        return changes

    def _watch(self, resource_version: str) -> None:
        """The watch thread: streams object events to the loop, relisting when the version expired."""
        while not self._stopping.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._objects.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    resource_version=resource_version,
                    timeout_seconds=WATCH_TIMEOUT_S,
                    allow_watch_bookmarks=True,
                ):
                    if self._stopping.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
                        return
                    body = event["object"]
                    if event["type"] == "ERROR":
                        raise ApiException(status=int(body.get("code", 500)), reason=body.get("message", ""))
                    resource_version = body["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._post(event["type"], body)
            except ApiException as exc:
                if self._stopping.is_set():
                    return
                if exc.status == 410:
                    resource_version = self._relist()
                else:
                    logger.warning("Function watch failed", extra={"reason": _reason(exc)})
                    self._stopping.wait(1.0)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                logger.warning("Function watch failed", extra={"reason": str(exc)})
                self._stopping.wait(1.0)

    def _relist(self) -> str:
        """A fresh list for the loop to diff against; retried (every second) until it succeeds."""
        while True:
            try:
                listing: dict[str, Any] = self._objects.list_namespaced_custom_object(  # type: ignore[assignment]
                    GROUP, VERSION, self._namespace, PLURAL
                )
            except Exception as exc:
                if self._stopping.is_set():
                    return ""
                logger.warning("Function relist failed", extra={"reason": str(exc)})
                self._stopping.wait(1.0)
                continue
            self._post("RELIST", listing)
            return str(listing["metadata"]["resourceVersion"])

    def _post(self, kind: str, body: dict[str, Any]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, body))

    # -- writes -------------------------------------------------------------------------

    async def _read_revision(self) -> int:
        try:
            configmap = await self._call(
                self._core.read_namespaced_config_map, REVISION_CONFIGMAP, self._namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return 0
        self._revision_version = configmap.metadata.resource_version
        return int((configmap.data or {}).get("revision", "0"))

    async def _save_revision(self, revision: int) -> None:
        """Records revision as handed out, before the change that uses it is written.

        The write is conditional on the ConfigMap being as this store last saw it, so a second
        registry on the same namespace fails loudly instead of handing out the same revisions.
        """
        metadata = client.V1ObjectMeta(name=REVISION_CONFIGMAP, resource_version=self._revision_version)
        body = client.V1ConfigMap(metadata=metadata, data={"revision": str(revision)})
        try:
            if self._revision_version is None:
                saved = await self._call(self._core.create_namespaced_config_map, self._namespace, body)
            else:
                saved = await self._call(
                    self._core.replace_namespaced_config_map, REVISION_CONFIGMAP, self._namespace, body
                )
        except ApiException as exc:
            if exc.status == 409:
                raise StoreError(
                    f"cannot record revision {revision}: ConfigMap {REVISION_CONFIGMAP} was changed by "
                    "someone else (is a second registry running in this namespace?)"
                ) from exc
            raise StoreError(f"cannot record revision {revision}: {_reason(exc)}") from exc
        self._revision_version = saved.metadata.resource_version

    async def _write_object(self, spec: types_pb2.FunctionSpec, *, exists: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": spec.name, "annotations": _timestamps(spec)},
            "spec": manifest_from_spec(spec),
        }
        if exists:
            try:
                current = await self._call(
                    self._objects.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    spec.name,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
            else:
                metadata = current["metadata"]
                body["metadata"] = {
                    **metadata,
                    "annotations": {**(metadata.get("annotations") or {}), **body["metadata"]["annotations"]},
                }
                replaced: dict[str, Any] = await self._call(
                    self._objects.replace_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    spec.name,
                    body,
                )
                return replaced
        created: dict[str, Any] = await self._call(
            self._objects.create_namespaced_custom_object, GROUP, VERSION, self._namespace, PLURAL, body
        )
        return created

    async def _write_status(
        self, body: dict[str, Any], *, ready: bool, reason: str, message: str, revision: int | None
    ) -> None:
        status: dict[str, Any] = {
            "observedGeneration": int(body["metadata"].get("generation", 1)),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": reason,
                    "message": message,
                    "observedGeneration": int(body["metadata"].get("generation", 1)),
                    "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        }
        if revision is not None:
            status["observedRevision"] = revision
        await self._call(
            self._objects.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            self._namespace,
            PLURAL,
            body["metadata"]["name"],
            {"status": status},
        )

    async def _report_invalid(self, body: dict[str, Any], problem: str) -> None:
        name = body["metadata"]["name"]
        served = self._specs.get(name)
        message = problem if served is None else f"{problem} (still serving revision {served.revision})"
        try:
            await self._write_status(body, ready=False, reason="InvalidSpec", message=message, revision=None)
        except ApiException as exc:
            logger.warning(
                "Function status not written", extra={"functionName": name, "reason": _reason(exc)}
            )

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """A blocking client call on a worker thread, so the event loop keeps serving.

        Any: the client returns custom objects as plain dicts of JSON.
        """
        return await asyncio.to_thread(method, *args)


def _inspect(body: dict[str, Any]) -> _Seen:
    metadata = body["metadata"]
    generation = int(metadata.get("generation", 1))
    try:
        spec = normalize_spec(spec_from_manifest(metadata["name"], body.get("spec") or {}))
    except SpecValidationError as exc:
        return _Seen(metadata.get("uid", ""), generation, None, str(exc))
    return _Seen(metadata.get("uid", ""), generation, spec)


def _timestamps(spec: types_pb2.FunctionSpec) -> dict[str, str]:
    """The registry-owned times, kept as annotations so a restarted registry serves them unchanged."""
    return {CREATED_ANNOTATION: str(spec.created_at_ms), UPDATED_ANNOTATION: str(spec.updated_at_ms)}


def _reason(exc: ApiException) -> str:
    return f"{exc.status} {exc.reason}".strip()
