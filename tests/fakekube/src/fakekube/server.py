"""The HTTP API server: kube-apiserver's REST surface over the store, with audit and faults.

Routing follows the real URL layout (``/api/v1/namespaces/<ns>/pods/<name>/log``,
``/apis/apps/v1/deployments``...), verbs follow RBAC's naming (a GET with ``?watch=1`` is
``watch``), and every failure is a ``Status`` object with the code and reason a real server
would send. Watches stream newline-delimited JSON events over a chunked response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from . import discovery, patches
from .audit import Audit
from .errors import ApiError, bad_request, conflict, gone, internal, invalid, method_not_allowed, not_found
from .faults import FaultInjector
from .openapi import OpenApi
from .resources import ResourceRegistry, ResourceType
from .selectors import parse_field_selector, parse_label_selector, selector_from_object
from .store import Store

UNKNOWN_TOKEN = "system:unknown-token"  # the audit's user for a token nobody holds
log = logging.getLogger("fakekube.server")
# PyYAML ships no type information (and the lint environment has no stubs for it).
yaml: Any = importlib.import_module("yaml")

MAX_BODY = 3 * 1024 * 1024
DEFAULT_WATCH_TIMEOUT = 1800


class LogSource(Protocol):
    """Where pod logs come from (the kubelet): raises :class:`ApiError` like the real kubelet path."""

    def stream_logs(
        self,
        pod: dict[str, Any],
        container: str | None,
        *,
        follow: bool,
        tail_lines: int | None,
        timestamps: bool,
        previous: bool,
        since_seconds: int | None,
        limit_bytes: int | None,
    ) -> AsyncIterator[bytes]: ...


@dataclass
class Target:
    """What a resource request addresses: the type, maybe a namespace, a name, a subresource."""

    resource: ResourceType
    group: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def sub(self) -> str:
        return self.subresource or ""


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _error(error: ApiError) -> web.Response:
    return _json(error.status(), error.code, error.headers)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid value for {name}: "{value}"') from None


class ApiServer:
    """The aiohttp application; one instance serves one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        audit: Audit,
        faults: FaultInjector,
        *,
        tokens: dict[str, str],
        logs: LogSource | None = None,
        bookmark_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.registry: ResourceRegistry = store.registry
        self.audit = audit
        self.faults = faults
        self.tokens = tokens
        self.logs = logs
        self.bookmark_interval = bookmark_interval
        self.host = ""
        self.openapi = OpenApi(self.registry)
        self._release = asyncio.Event()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner: web.AppRunner | None = None

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1])
        self.host = f"{host}:{bound}"
        return bound

    async def serve_socket(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> None:
        """Also serve on ``sock``, a listening socket (one in the pod network, say)."""
        assert self._runner is not None, "start() first"
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()

    async def stop(self) -> None:
        self.release_hangs()
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def release_hangs(self) -> None:
        """Let every request held by a ``hang`` fault proceed."""
        self._release.set()
        self._release = asyncio.Event()

    # -- routing ---------------------------------------------------------------------------------
    def _target(self, path: str) -> Target | None:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            return None
        if parts[0] == "api":
            if len(parts) < 3:
                return None
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 4:
                return None
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3:
            raise not_found(plural, group, "/".join(rest[1:]))
        resource = self.registry.lookup(group, version, plural)
        if resource is None:
            raise ApiError(
                404,
                "NotFound",
                "the server could not find the requested resource",
                details={"group": group, "kind": plural} if group else {"kind": plural},
            )
        if namespace is not None and not resource.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and sub not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(resource, group, plural, namespace, name, sub)

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name is None:
                return "watch" if _flag(request.query.get("watch")) else "list"
            return "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if target.name is not None else "deletecollection"
        return method.lower()

    def _user(self, request: web.Request) -> str:
        # The scheme is case-insensitive, as kube-apiserver's bearer-token authenticator has it:
        # in-cluster configuration of the official client sends "bearer <token>".
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.tokens.get(token.strip(), UNKNOWN_TOKEN)
        return "system:anonymous"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user, agent = self._user(request), request.headers.get("User-Agent", "")
        verb, target = request.method.lower(), None
        if user == UNKNOWN_TOKEN:  # a bearer token no user holds: 401, as kube-apiserver answers
            refused = _error(ApiError(401, "Unauthorized", "Unauthorized"))
            self.audit.add(
                verb=verb,
                group="",
                resource="",
                subresource="",
                namespace="",
                name="",
                code=401,
                user=user,
                user_agent=agent,
                path=request.path,
            )
            return refused
        try:
            target = self._target(request.path)
            if target is None:
                response: web.StreamResponse = self._non_resource(request)
                self.audit.add(
                    verb=verb,
                    group="",
                    resource="",
                    subresource="",
                    namespace="",
                    name="",
                    code=response.status,
                    user=user,
                    user_agent=agent,
                    path=request.path,
                )
                return response
            verb = self._verb(request, target)
            await self._inject(verb, target)
            response = await self._dispatch(request, target, verb)
        except ApiError as error:
            response = _error(error)
        except web.HTTPRequestEntityTooLarge:
            response = _error(
                ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
            )
        except Exception as error:  # a bug of ours: a Status, never a stack trace to the client
            log.exception("request failed: %s %s", request.method, request.path)
            response = _error(internal(type(error).__name__))
        if target is not None:
            self.audit.add(
                verb=verb,
                group=target.group,
                resource=target.plural,
                subresource=target.sub,
                namespace=target.namespace or "",
                name=target.name or "",
                code=response.status,
                user=user,
                user_agent=agent,
                path=request.path,
            )
        return response

    async def _inject(self, verb: str, target: Target) -> None:
        rule = self.faults.take(
            (verb, target.group, target.plural, target.sub, target.namespace or "", target.name or "")
        )
        if rule is None:
            return
        if rule.action == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), rule.seconds)
            return
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
        details: dict[str, Any] = (
            {"retryAfterSeconds": rule.retry_after} if rule.retry_after is not None else {}
        )
        raise ApiError(rule.status, rule.reason, rule.message, details=details or None, headers=headers)

    def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if request.method != "GET":
            raise method_not_allowed()
        if path == "/version":
            return _json(discovery.version_info())
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/api":
            return _json(discovery.api_versions(self.host))
        if path == "/openapi/v3":
            return _json(self.openapi.root())
        if path.startswith("/openapi/v3/"):
            segments = path[len("/openapi/v3/") :].split("/")
            group, version = (
                ("", segments[1])
                if segments[0] == "api" and len(segments) == 2
                else (
                    (segments[1], segments[2]) if segments[0] == "apis" and len(segments) == 3 else ("", "")
                )
            )
            document = self.openapi.document(group, version) if version else None
            if document is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.Response(body=document, content_type="application/json")
        if path == "/apis":
            return _json(discovery.api_group_list(self.registry))
        parts = [p for p in path.split("/") if p]
        found: dict[str, Any] | None = None
        if len(parts) == 2 and parts[0] == "api":
            found = discovery.api_resource_list(self.registry, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(self.registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.api_resource_list(self.registry, parts[1], parts[2])
        elif path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
            paths += [f"/apis/{g}/{v}" for g, vs in self.registry.group_versions().items() if g for v in vs]
            return _json({"paths": sorted(paths)})
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _json(found)

    # -- resource requests -----------------------------------------------------------------------
    async def _body(self, request: web.Request, *, yaml_ok: bool = False) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            if yaml_ok and not raw.lstrip().startswith((b"{", b"[")):
                return yaml.safe_load(raw)
            return orjson.loads(raw)
        except (orjson.JSONDecodeError, yaml.YAMLError) as error:
            raise bad_request(
                f"couldn't get version/kind; json parse error: {str(error).splitlines()[0]}"
            ) from None

    @staticmethod
    def _write_options(request: web.Request) -> dict[str, Any]:
        dry_run = request.query.getall("dryRun", [])
        if any(v != "All" for v in dry_run):
            raise bad_request(f"Invalid dry run value: {dry_run}")
        validation = request.query.get("fieldValidation") or "Strict"
        if validation not in ("Ignore", "Warn", "Strict"):
            raise bad_request(
                f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got "{validation}"'
            )
        return {"dry_run": bool(dry_run), "field_validation": validation}

    async def _dispatch(self, request: web.Request, target: Target, verb: str) -> web.StreamResponse:
        resource = target.resource
        query = request.query
        if target.subresource == "log":
            if verb != "get":
                raise method_not_allowed()
            return await self._pod_log(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target, verb)
        if resource.namespaced and target.namespace is None and verb in ("create", "deletecollection"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "get":
            return self._get(request, target)
        if verb == "create":
            if target.name is not None:
                raise method_not_allowed()
            created = self.store.create(
                resource, target.namespace, await self._body(request), **self._write_options(request)
            )
            return _json(created, 201)
        if verb == "update":
            assert target.name is not None
            updated = self.store.replace(
                resource,
                target.namespace,
                target.name,
                await self._body(request),
                subresource=target.subresource,
                **self._write_options(request),
            )
            return _json(updated)
        if verb == "patch":
            assert target.name is not None
            content_type = request.content_type
            if content_type not in patches.PATCH_TYPES:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: {', '.join(patches.PATCH_TYPES)}",
                )
            body = await self._body(request, yaml_ok=content_type == patches.APPLY_PATCH)
            patched, was_created = self.store.patch(
                resource,
                target.namespace,
                target.name,
                content_type,
                body,
                subresource=target.subresource,
                field_manager=query.get("fieldManager"),
                force=_flag(query.get("force")),
                **self._write_options(request),
            )
            return _json(patched, 201 if was_created else 200)
        if verb == "delete":
            assert target.name is not None
            options = await self._delete_options(request)
            answer, done = self.store.delete(resource, target.namespace, target.name, **options)
            return _json(answer, 200 if done else 202)
        if verb == "deletecollection":
            options = await self._delete_options(request)
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), resource.key)
            for obj in self.store.select(resource, target.namespace, labels, fields):
                with contextlib.suppress(ApiError):
                    self.store.delete(
                        resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], **options
                    )
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise method_not_allowed()

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request) or {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        query = request.query
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = query.get("orphanDependents", body.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if orphan in (True, "true") else "Background"
        grace = _int(query, "gracePeriodSeconds")
        if grace is None and body.get("gracePeriodSeconds") is not None:
            grace = int(body["gracePeriodSeconds"])
        dry_run = query.getall("dryRun", []) or body.get("dryRun") or []
        return {
            "propagation": propagation,
            "grace_seconds": grace,
            "preconditions": body.get("preconditions"),
            "dry_run": bool(dry_run),
        }

    def _get(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        obj = self.store.get(target.resource, target.namespace, target.name)
        if "as=Table" in request.headers.get("Accept", ""):
            return _json(
                discovery.table(
                    target.resource,
                    [obj],
                    obj["metadata"]["resourceVersion"],
                    request.query.get("includeObject") or "Metadata",
                )
            )
        return _json(obj)

    def _list(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        query = request.query
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), resource.key)
        self.store.check_list_version(query.get("resourceVersion"), query.get("resourceVersionMatch"))
        items = self.store.select(resource, target.namespace, labels, fields)
        version = str(self.store.resource_version)
        limit, token = _int(query, "limit"), query.get("continue")
        metadata: dict[str, Any] = {"resourceVersion": version}
        if token:
            start_rv, after = self._decode_continue(token)
            version = str(start_rv)
            metadata["resourceVersion"] = version
            items = [i for i in items if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > after]
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            metadata["continue"] = base64.urlsafe_b64encode(
                orjson.dumps({"rv": int(version), "after": [last.get("namespace", ""), last["name"]]})
            ).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if "as=Table" in request.headers.get("Accept", ""):
            answer = discovery.table(resource, items, version, query.get("includeObject") or "Metadata")
            if "continue" in metadata:
                answer["metadata"]["continue"] = metadata["continue"]
            return _json(answer)
        if resource.schema is None:
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        return _json(
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": metadata,
                "items": items,
            }
        )

    def _decode_continue(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(token.encode()))
            start_rv, after = int(decoded["rv"]), (str(decoded["after"][0]), str(decoded["after"][1]))
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error, orjson.JSONDecodeError):
            raise bad_request("continue key is not valid: illegal base64 data") from None
        if start_rv < self.store.compacted:
            raise gone(
                "The provided continue parameter is too old to display a consistent list result. You can "
                "start a new list without the continue parameter."
            )
        return start_rv, after

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        resource = target.resource
        query = request.query
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), resource.key)
        timeout = _int(query, "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        initial = _flag(query.get("sendInitialEvents")) if "sendInitialEvents" in query else None
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        try:
            watcher = self.store.watch(
                resource, target.namespace, query.get("resourceVersion"), labels, fields, initial=initial
            )
        except ApiError as error:
            if error.code != 410:
                raise
            await response.prepare(request)
            await response.write(orjson.dumps({"type": "ERROR", "object": error.status()}) + b"\n")
            await response.write_eof()
            return response
        initial_left = watcher.queue.qsize() if initial else -1
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if initial_left == 0 and bookmarks:
                await self._bookmark(response, resource, initial_end=True)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(
                        watcher.queue.get(),
                        min(remaining, self.bookmark_interval) if bookmarks else remaining,
                    )
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        await self._bookmark(response, resource)
                    continue
                if item is None:
                    if watcher.reset and request.transport is not None:
                        request.transport.abort()
                        return response
                    break
                kind, obj = item
                await response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")
                if initial_left > 0:
                    initial_left -= 1
                    if initial_left == 0 and bookmarks:
                        await self._bookmark(response, resource, initial_end=True)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away: nothing left to send
        finally:
            self.store.unwatch(watcher)
        return response

    async def _bookmark(
        self, response: web.StreamResponse, resource: ResourceType, *, initial_end: bool = False
    ) -> None:
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        event = {
            "type": "BOOKMARK",
            "object": {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata},
        }
        await response.write(orjson.dumps(event) + b"\n")

    async def _scale(self, request: web.Request, target: Target, verb: str) -> web.Response:
        resource = target.resource
        assert target.name is not None
        obj = self.store.get(resource, target.namespace, target.name)
        scale = _scale_of(obj)
        if verb == "get":
            return _json(scale)
        if verb == "update":
            body = await self._body(request)
        elif verb == "patch":
            raw = await self._body(request)
            content_type = request.content_type
            if content_type == patches.JSON_PATCH:
                body = patches.json_patch(scale, raw)
            elif content_type in (patches.MERGE_PATCH, patches.STRATEGIC_PATCH):
                body = patches.merge_patch(scale, raw)
            else:
                raise ApiError(
                    415, "UnsupportedMediaType", f"unsupported patch type for scale: {content_type}"
                )
        else:
            raise method_not_allowed()
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != obj["metadata"]["resourceVersion"]:
            raise conflict(
                resource.plural,
                resource.group,
                target.name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                target.name,
                [
                    (
                        "spec.replicas",
                        "FieldValueInvalid",
                        f"Invalid value: {replicas}: must be greater than or equal to 0",
                    )
                ],
            )
        obj["spec"]["replicas"] = replicas
        obj["metadata"].pop("resourceVersion", None)
        updated = self.store.replace(resource, target.namespace, target.name, obj)
        return _json(_scale_of(updated))

    async def _pod_log(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        pod = self.store.get(target.resource, target.namespace, target.name)
        if self.logs is None:
            raise bad_request("no kubelet serves logs on this cluster")
        query = request.query
        chunks = self.logs.stream_logs(
            pod,
            query.get("container"),
            follow=_flag(query.get("follow")),
            tail_lines=_int(query, "tailLines"),
            timestamps=_flag(query.get("timestamps")),
            previous=_flag(query.get("previous")),
            since_seconds=_int(query, "sinceSeconds"),
            limit_bytes=_int(query, "limitBytes"),
        )
        iterator = chunks.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = b""
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            if first:
                await response.write(first)
            async for chunk in iterator:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1 Scale`` view of a Deployment or ReplicaSet."""
    selector = selector_from_object((obj.get("spec") or {}).get("selector"))
    text = ",".join(
        f"{r.key}={r.values[0]}" if r.op == "=" else f"{r.key} {r.op} ({','.join(r.values)})"
        for r in selector.requirements
    )
    metadata = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in metadata
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": text},
    }
