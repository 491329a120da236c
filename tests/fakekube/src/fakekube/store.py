"""The object store: what etcd plus the generic registry are to kube-apiserver.

One global, monotonically increasing resourceVersion orders every write; a bounded history of
events lets watches resume from a version (and answers 410 Gone once that version has been
compacted away). Every write goes through the kind's strategy (defaults, admission, immutability)
and the real OpenAPI schema. The store runs on the cluster's event loop thread only: methods are
synchronous and a write is atomic with respect to every reader and watcher.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from . import meta as m
from . import patches
from .errors import ApiError, already_exists, bad_request, conflict, gone, invalid, not_found
from .resources import CRD_KEY, NAMESPACE_KEY, POD_KEY, ResourceRegistry, ResourceType
from .schema import SchemaNode, decode, validate_builtin, validate_custom
from .selectors import FieldSelector, LabelSelector
from .strategies import check_namespace, strategy_for

log = logging.getLogger("fakekube.store")
T = TypeVar("T")

# Kinds whose DELETE answers with the deleted object rather than a Status (their REST strategies'
# ReturnDeletedObject); what the official client's return types expect.
_RETURNS_OBJECT = {
    ("", "pods"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "resourcequotas"),
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}
# batch/v1 Jobs still orphan their pods when no propagationPolicy is given (compatibility default).
_ORPHAN_BY_DEFAULT = {("batch", "jobs"), ("batch", "cronjobs")}
FOREGROUND = "foregroundDeletion"


@dataclass(frozen=True)
class Event:
    """A committed change, as watches and controllers receive it."""

    rv: int
    resource: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Watcher:
    """One open watch: its filters and a queue the HTTP stream drains (``None`` ends it)."""

    def __init__(
        self,
        resource: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.reset = False

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if self.namespace and metadata.get("namespace") != self.namespace:
            return False
        return self.labels.matches(metadata.get("labels")) and self.fields.matches(obj)

    def offer(self, event: Event) -> None:
        """Translate for this watcher's selectors: leaving the selection reads as DELETED."""
        if event.resource.key != self.resource.key:
            return
        now, before = self.matches(event.obj), self.matches(event.old)
        if event.type == "MODIFIED":
            kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
        else:
            kind = event.type if now else None
        if kind is not None:
            self.queue.put_nowait((kind, copy.deepcopy(event.obj)))

    def close(self, *, reset: bool = False) -> None:
        self.reset = reset
        self.queue.put_nowait(None)


def _deep(obj: T) -> T:
    return copy.deepcopy(obj)


class Store:
    """Objects by type, namespace and name, with watch history and change subscribers."""

    def __init__(self, registry: ResourceRegistry, *, history_size: int = 5000) -> None:
        self.registry = registry
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = collections.defaultdict(
            dict
        )
        self._rv = 1
        self._history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self._compacted = 0  # the newest version no longer in history
        self._watchers: set[Watcher] = set()
        self._subscribers: list[Callable[[Event], None]] = []
        self._uids: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        self._applied: dict[tuple[tuple[str, str], str, str, str], dict[str, Any]] = {}
        self.on_crd: Callable[[dict[str, Any] | None, dict[str, Any] | None], None] | None = None

    # -- reading ---------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted(self) -> int:
        """The newest resourceVersion no longer in the watch history (older ones answer 410)."""
        return self._compacted

    def peek(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object itself (no copy): for controllers that only read."""
        return self._objects[resource.key].get((namespace or "", name))

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        found = self.peek(resource, namespace, name)
        if found is None:
            raise not_found(resource.plural, resource.group, name)
        result: dict[str, Any] = _deep(found)
        return result

    def iter(self, resource: ResourceType, namespace: str | None = None) -> Iterable[dict[str, Any]]:
        """Stored objects (no copies), sorted by namespace and name like etcd keys."""
        bucket = self._objects[resource.key]
        for key in sorted(bucket):
            if namespace is None or key[0] == namespace:
                yield bucket[key]

    def select(
        self,
        resource: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[dict[str, Any]]:
        items = []
        for obj in self.iter(resource, namespace):
            metadata = obj.get("metadata") or {}
            if labels is not None and not labels.matches(metadata.get("labels")):
                continue
            if fields is not None and not fields.matches(obj):
                continue
            items.append(_deep(obj))
        return items

    def exists(self, key: tuple[str, str], namespace: str, name: str) -> bool:
        return (namespace, name) in self._objects[key]

    def _namespace_phase(self, namespace: str) -> str | None:
        found = self._objects[NAMESPACE_KEY].get(("", namespace))
        return None if found is None else str((found.get("status") or {}).get("phase") or "Active")

    # -- watching --------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` synchronously after every commit (controllers queue work from it)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(callback)

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None,
        since: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        initial: bool | None = None,
    ) -> Watcher:
        """Open a watch from ``since``: unset or "0" first replays the current state as ADDED.

        ``initial`` is ``sendInitialEvents``: when set, it alone decides whether to replay.
        """
        watcher = Watcher(resource, namespace, labels, fields)
        replay = initial if initial is not None else since in (None, "", "0")
        if since not in (None, "", "0") and not initial:
            start = self._parse_rv(since)
            if start < self._compacted:
                raise gone(f"too old resource version: {start} ({self._compacted + 1})")
            for event in self._history:
                if event.rv > start:
                    watcher.offer(event)
        if replay:
            for obj in self.iter(resource, namespace):
                if watcher.matches(obj):
                    watcher.queue.put_nowait(("ADDED", _deep(obj)))
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def drop_watches(self, *, reset: bool = False) -> int:
        """End every open watch (clients must re-list or resume); returns how many were open."""
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.close(reset=reset)
        self._watchers.clear()
        return len(watchers)

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does: older versions now answer 410."""
        self._compacted = self._rv
        self._history.clear()

    @staticmethod
    def _parse_rv(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise bad_request(f'invalid resource version "{text}"') from None

    def check_list_version(self, since: str | None, match: str | None) -> None:
        """List ``resourceVersion`` semantics: newer than now is a 504, compacted is a 410."""
        if since in (None, "", "0"):
            return
        wanted = self._parse_rv(since)
        if wanted > self._rv:
            raise ApiError(
                504,
                "Timeout",
                f"Too large resource version: {wanted}, current: {self._rv}",
                details={
                    "causes": [
                        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        if match == "Exact" and wanted != self._rv:
            raise gone(f"too old resource version: {wanted} ({self._rv})")

    # -- committing ------------------------------------------------------------------------------
    def _commit(
        self, resource: ResourceType, kind: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        self._rv += 1
        m.meta(obj)["resourceVersion"] = str(self._rv)
        key = (m.meta(obj).get("namespace") or "", m.meta(obj)["name"])
        if kind == "DELETED":
            self._objects[resource.key].pop(key, None)
            self._uids.pop(m.meta(obj).get("uid", ""), None)
            self._applied = {k: v for k, v in self._applied.items() if k[:3] != (resource.key, *key)}
        else:
            self._objects[resource.key][key] = obj
            self._uids[m.meta(obj)["uid"]] = (resource.key, key)
        event = Event(self._rv, resource, kind, _deep(obj), _deep(old) if old is not None else None)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("subscriber failed on %s %s", kind, key)
        if resource.key == CRD_KEY and self.on_crd is not None:
            self.on_crd(obj if kind != "DELETED" else None, old)

    @staticmethod
    def _decode(resource: ResourceType, obj: dict[str, Any], field_validation: str) -> None:
        """What decoding a request body does: types checked, unknown fields refused or dropped."""
        if resource.schema is None:
            decode(obj, resource.group, strict=field_validation == "Strict")

    @staticmethod
    def _validate(resource: ResourceType, obj: dict[str, Any]) -> None:
        """Validation after defaulting: the kind's own rules, then the schema."""
        causes = strategy_for(resource).validate(resource, obj)
        if causes:
            raise invalid(resource.kind, resource.group, m.meta(obj).get("name", ""), causes)
        if resource.schema is not None:
            validate_custom(obj, resource.schema, resource.kind, resource.group)
        else:
            validate_builtin(obj, resource.group)

    def _check_identity(self, resource: ResourceType, namespace: str | None, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not a JSON object")
        api_version, kind = (
            obj.setdefault("apiVersion", resource.api_version),
            obj.setdefault("kind", resource.kind),
        )
        if api_version != resource.api_version or kind != resource.kind:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version})"
                if api_version != resource.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        metadata = m.meta(obj)
        if resource.namespaced:
            if metadata.get("namespace") and namespace and metadata["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if namespace:
                metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        return obj

    def create(
        self,
        resource: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> dict[str, Any]:
        obj = self._check_identity(resource, namespace, _deep(body))
        self._decode(resource, obj, field_validation)
        metadata = m.meta(obj)
        if resource.namespaced and not metadata.get("namespace"):
            raise bad_request("the server could not find the requested resource: namespace required")
        ns = metadata.get("namespace") or ""
        if not metadata.get("name"):
            if not metadata.get("generateName"):
                raise invalid(
                    resource.kind,
                    resource.group,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            for _ in range(8):
                metadata["name"] = f"{metadata['generateName']}{m.random_suffix()}"
                if not self.exists(resource.key, ns, metadata["name"]):
                    break
        name = metadata["name"]
        if resource.namespaced:
            check_namespace(ns, self._namespace_phase, resource, name)
        for server_field in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            metadata.pop(server_field, None)
        metadata["uid"] = m.new_uid()
        metadata["creationTimestamp"] = m.timestamp()
        if "spec" in obj:
            metadata["generation"] = 1
        strategy_for(resource).prepare_create(resource, obj, self.exists)
        self._validate(resource, obj)
        if self.exists(resource.key, ns, name):
            raise already_exists(resource.plural, resource.group, name)
        if not dry_run:
            self._commit(resource, "ADDED", obj, None)
        return _deep(obj)

    def replace(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> dict[str, Any]:
        """PUT: optimistic concurrency on ``metadata.resourceVersion`` when the body carries one."""
        old = self.peek(resource, namespace, name)
        if old is None:
            raise not_found(resource.plural, resource.group, name)
        new = self._check_identity(resource, namespace, _deep(body))
        self._decode(resource, new, field_validation)
        if m.meta(new).get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({m.meta(new).get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        m.meta(new)["name"] = name
        given = m.meta(new).get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise conflict(
                resource.plural,
                resource.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            merged = _deep(old)
            merged["status"] = new.get("status")
            if merged["status"] is None:
                merged.pop("status")
            new = merged
        elif "status" in resource.subresources:
            if "status" in old:
                new["status"] = _deep(old["status"])
            else:
                new.pop("status", None)
        return self._update(resource, old, new, dry_run=dry_run)

    def _update(
        self, resource: ResourceType, old: dict[str, Any], new: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        metadata, old_meta = m.meta(new), old["metadata"]
        for kept in (
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if kept in old_meta:
                metadata[kept] = old_meta[kept]
            else:
                metadata.pop(kept, None)
        metadata.pop("selfLink", None)
        metadata["resourceVersion"] = old_meta["resourceVersion"]
        if old_meta.get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                raise invalid(
                    resource.kind,
                    resource.group,
                    old_meta["name"],
                    [
                        (
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being deleted",
                        )
                    ],
                )
        strategy_for(resource).prepare_update(resource, new, old)
        if "generation" in old_meta:
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }
            metadata["generation"] = old_meta["generation"] + (1 if changed else 0)
        self._validate(resource, new)
        if new == old:
            return _deep(old)
        if dry_run:
            return new
        self._commit(resource, "MODIFIED", new, _deep(old))
        self._finish_if_released(resource, new)
        return _deep(new)

    def _finish_if_released(self, resource: ResourceType, obj: dict[str, Any]) -> bool:
        """Remove a terminating object once its finalizers are gone (and a pod's grace is over)."""
        metadata = obj["metadata"]
        if not metadata.get("deletionTimestamp") or metadata.get("finalizers"):
            return False
        if resource.key == POD_KEY and metadata.get("deletionGracePeriodSeconds"):
            return False
        if resource.key == NAMESPACE_KEY and (obj.get("spec") or {}).get("finalizers"):
            return False
        self._commit(resource, "DELETED", obj, _deep(obj))
        return True

    def patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> tuple[dict[str, Any], bool]:
        """Apply a patch of one of the four types; returns ``(object, created)`` (apply may create)."""
        del force  # apply conflicts between managers are not modelled: every apply wins
        schema = SchemaNode.for_kind(resource.group, resource.version, resource.kind)
        old = self.peek(resource, namespace, name)
        if content_type == patches.APPLY_PATCH:
            if not field_manager:
                raise invalid(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    [("fieldManager", "FieldValueRequired", "Required value: is required for apply patch")],
                )
            if not isinstance(body, dict):
                raise bad_request("apply patch must be a YAML or JSON object")
            key = (resource.key, namespace or "", name, field_manager)
            if old is None:
                if subresource:
                    raise not_found(resource.plural, resource.group, name)
                applied = _deep(body)
                m.meta(applied).setdefault("name", name)
                created = self.create(
                    resource, namespace, applied, dry_run=dry_run, field_validation=field_validation
                )
                if not dry_run:
                    self._applied[key] = _deep(body)
                return created, True
            target = patches.apply_patch(old, self._applied.get(key), body, schema)
            if not dry_run:
                self._applied[key] = _deep(body)
        elif old is None:
            raise not_found(resource.plural, resource.group, name)
        elif content_type == patches.MERGE_PATCH:
            target = patches.merge_patch(old, body)
        elif content_type == patches.STRATEGIC_PATCH:
            if resource.schema is not None:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources; use a merge or JSON patch",
                )
            target = patches.strategic_merge(old, body, schema)
        elif content_type == patches.JSON_PATCH:
            target = patches.json_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        if not isinstance(target, dict):
            raise bad_request("the patch did not produce an object")
        if m.meta(target).get("name") != name:
            raise bad_request("the name of the object cannot be changed by a patch")
        return self.replace(
            resource,
            namespace,
            name,
            target,
            subresource=subresource,
            dry_run=dry_run,
            field_validation=field_validation,
        ), False

    # -- deleting --------------------------------------------------------------------------------
    def delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete or start deleting; returns ``(answer body, finished)`` (the HTTP status follows)."""
        old = self.peek(resource, namespace, name)
        if old is None:
            raise not_found(resource.plural, resource.group, name)
        metadata = old["metadata"]
        for field, mine in (
            ("uid", metadata.get("uid")),
            ("resourceVersion", metadata.get("resourceVersion")),
        ):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != mine:
                raise conflict(
                    resource.plural,
                    resource.group,
                    name,
                    f"Precondition failed: {field.upper() if field == 'uid' else 'ResourceVersion'} "
                    f"in precondition: {wanted}, {'UID' if field == 'uid' else 'ResourceVersion'} "
                    f"in object meta: {mine}",
                )
        policy = propagation or ("Orphan" if resource.key in _ORPHAN_BY_DEFAULT else "Background")
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    (
                        "propagationPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{policy}": supported values: "Foreground", "Background", '
                        '"Orphan", "nil"',
                    )
                ],
            )
        if dry_run:
            return self._deletion_answer(resource, old, True), True
        new = _deep(old)
        new_meta = new["metadata"]
        if resource.key == POD_KEY:
            grace = (
                grace_seconds
                if grace_seconds is not None
                else int((old.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            )
            terminal = (old.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if (old.get("spec") or {}).get("nodeName") and not terminal and grace > 0:
                current = new_meta.get("deletionGracePeriodSeconds")
                if current is None or grace < current:
                    new_meta["deletionGracePeriodSeconds"] = grace
                    new_meta["deletionTimestamp"] = m.timestamp(m.now() + datetime.timedelta(seconds=grace))
                    self._commit(resource, "MODIFIED", new, _deep(old))
                return _deep(new), False
            new_meta["deletionGracePeriodSeconds"] = 0
        if policy == "Orphan":
            self.orphan_dependents(metadata["uid"])
        finalizers = list(new_meta.get("finalizers") or ())
        if policy == "Foreground" and FOREGROUND not in finalizers and not new_meta.get("deletionTimestamp"):
            finalizers.append(FOREGROUND)
        if finalizers:
            if not new_meta.get("deletionTimestamp") or new_meta.get("finalizers") != finalizers:
                new_meta["finalizers"] = finalizers
                new_meta.setdefault("deletionTimestamp", m.timestamp())
                new_meta.setdefault("deletionGracePeriodSeconds", 0)
                if resource.key == NAMESPACE_KEY:
                    new.setdefault("status", {})["phase"] = "Terminating"
                self._commit(resource, "MODIFIED", new, _deep(old))
            return _deep(new), False
        if resource.key == NAMESPACE_KEY and (new.get("spec") or {}).get("finalizers"):
            if not new_meta.get("deletionTimestamp"):
                new_meta["deletionTimestamp"] = m.timestamp()
                new_meta["deletionGracePeriodSeconds"] = 0
                new.setdefault("status", {})["phase"] = "Terminating"
                self._commit(resource, "MODIFIED", new, _deep(old))
            return _deep(new), False
        self._commit(resource, "DELETED", new, _deep(old))
        return self._deletion_answer(resource, new, True), True

    def _deletion_answer(self, resource: ResourceType, obj: dict[str, Any], done: bool) -> dict[str, Any]:
        if resource.key in _RETURNS_OBJECT or not done:
            return _deep(obj)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": obj["metadata"]["name"],
                "group": resource.group,
                "kind": resource.plural,
                "uid": obj["metadata"]["uid"],
            },
        }

    def force_remove(self, resource: ResourceType, namespace: str | None, name: str) -> None:
        """Remove at once, ignoring finalizers and grace (node loss, namespace teardown)."""
        old = self.peek(resource, namespace, name)
        if old is not None:
            self._commit(resource, "DELETED", _deep(old), _deep(old))

    def remove_finalizer(
        self, resource: ResourceType, namespace: str | None, name: str, finalizer: str
    ) -> None:
        old = self.peek(resource, namespace, name)
        if old is None or finalizer not in (old["metadata"].get("finalizers") or ()):
            return
        new = _deep(old)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self._commit(resource, "MODIFIED", new, _deep(old))
        self._finish_if_released(resource, new)

    def dependents(self, uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        found = []
        for resource in self.registry:
            for obj in self.iter(resource):
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or ()):
                    found.append((resource, obj))
        return found

    def orphan_dependents(self, uid: str) -> None:
        for resource, obj in self.dependents(uid):
            new = _deep(obj)
            refs = [r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                del new["metadata"]["ownerReferences"]
            self._commit(resource, "MODIFIED", new, _deep(obj))

    def by_uid(self, uid: str) -> tuple[ResourceType, dict[str, Any]] | None:
        """The stored object with this uid (no copy), with its type."""
        found = self._uids.get(uid)
        if found is None:
            return None
        obj = self._objects[found[0]].get(found[1])
        return None if obj is None else (self.registry.by_key(found[0]), obj)

    # -- status writes from controllers ----------------------------------------------------------
    def write_status(
        self, resource: ResourceType, obj: Mapping[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Controllers' status updates; a no-op when nothing changed, None if the object is gone."""
        metadata = obj["metadata"]
        current = self.peek(resource, metadata.get("namespace"), metadata["name"])
        if current is None or current["metadata"]["uid"] != metadata["uid"]:
            return None
        if current.get("status") == status:
            return current
        new = _deep(current)
        new["status"] = status
        return self._update(resource, current, new)
