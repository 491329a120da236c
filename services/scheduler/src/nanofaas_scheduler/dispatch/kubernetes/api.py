"""The Kubernetes API as the backend uses it: plain JSON over the official client's transport.

The official `kubernetes` client loads the configuration (in-cluster, or
$KUBECONFIG / ~/.kube/config), authenticates and owns the connection pool;
requests go through its `ApiClient.param_serialize` / `call_api` with dict
bodies, so no object passes through the generated models (the builders are
plain data, and watch events stay plain dicts). Every blocking call runs on a
bounded thread pool, never on the event loop; 429, 5xx and transport errors
are retried with back-off up to a bound; every call is timed and counted by
verb and resource (metrics) and can be recorded (tests, the RBAC record).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_RETRIED = frozenset({429, 500, 502, 503, 504})
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "nanofaas"

JsonObject = dict[str, Any]


class ApiError(Exception):
    """A call failed for good: a Status the server answered, or the retries ran out."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.retry_after = 0.0  # seconds, from a 429's Retry-After


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource type: its URL prefix and plural (the RBAC name)."""

    group_version: str  # "v1", "batch/v1"
    plural: str

    def path(self, namespace: str, name: str = "") -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" + (f"/{name}" if name else "")


PODS = Resource("v1", "pods")
POD_LOGS = Resource("v1", "pods/log")
SERVICES = Resource("v1", "services")
JOBS = Resource("batch/v1", "jobs")
DEPLOYMENTS = Resource("apps/v1", "deployments")
DEPLOYMENT_SCALE = Resource("apps/v1", "deployments/scale")
MERGE_PATCH = "application/merge-patch+json"
ENDPOINT_SLICES = Resource("discovery.k8s.io/v1", "endpointslices")
EVENTS = Resource("v1", "events")

CallListener = Callable[[str, str, int, float], None]  # verb, resource, status (0: transport), seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.1
    max_delay: float = 2.0
    request_timeout: float = 10.0


def load_client(context_namespace: str = "") -> tuple[Any, str]:
    """(ApiClient, namespace): in-cluster inside a pod, else the kubeconfig's current context.

    The namespace: `context_namespace` if given, else the pod's, else the context's, else default.
    """
    from kubernetes import client
    from kubernetes import config as kube_config  # imported only by the kubernetes backend

    config: Any = kube_config  # the client ships no type information

    configuration = client.Configuration()
    namespace = ""
    if (_SERVICE_ACCOUNT / "token").exists():
        config.load_incluster_config(client_configuration=configuration)
        namespace_file = _SERVICE_ACCOUNT / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else ""
    else:
        # Read $KUBECONFIG now: the client's default location is fixed when it is imported.
        files = os.environ.get("KUBECONFIG", "").strip() or None
        config.load_kube_config(config_file=files, client_configuration=configuration, persist_config=False)
        _, active = config.list_kube_config_contexts(config_file=files)
        namespace = (active or {}).get("context", {}).get("namespace", "")
    # No retries inside urllib3: RetryPolicy is the one bound on how long a call may take.
    configuration.retries = 0
    return client.ApiClient(configuration), context_namespace or namespace or "default"


class KubeApi:
    def __init__(
        self,
        api_client: Any,
        *,
        workers: int = 8,
        retry: RetryPolicy | None = None,
        listeners: list[CallListener] | None = None,
    ) -> None:
        self.client = api_client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")
        self.retry = retry or RetryPolicy()
        self.listeners = listeners if listeners is not None else []

    # -- the blocking layer (pool threads and watch threads) -------------------------------------
    def request(
        self,
        method: str,
        verb: str,
        resource: Resource,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        stream: bool = False,
        raw: bool = False,
    ) -> Any:
        """One HTTP request; a JSON object back (or the raw response when `stream`). Raises ApiError."""
        method_, url, headers, body_, post = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        started = time.perf_counter()
        status = 0
        try:
            response = self.client.call_api(
                method_, url, headers, body_, post, _request_timeout=timeout or self.retry.request_timeout
            )
            status = response.status
            if stream and status == 200:
                return response.response
            data = response.read()
        except ApiError:
            raise
        except Exception as exc:  # urllib3 transport errors: connection refused, reset, read timeout
            raise ApiError(0, type(exc).__name__, str(exc) or type(exc).__name__) from exc
        finally:
            for listener in self.listeners:
                listener(verb, resource.plural, status, time.perf_counter() - started)
        if status >= 400:
            raise _status_error(status, data, response.headers)
        if raw:
            return data
        return json.loads(data) if data else {}

    def request_retried(self, method: str, verb: str, resource: Resource, path: str, **kwargs: Any) -> Any:
        """`request`, retried on 429 / 5xx / transport errors with jittered back-off, up to a bound."""
        delay = self.retry.first_delay
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self.request(method, verb, resource, path, **kwargs)
            except ApiError as exc:
                if (exc.status not in _RETRIED and exc.status != 0) or attempt == self.retry.attempts:
                    raise
                wait = exc.retry_after or delay * (0.5 + random.random())
                log.warning(
                    "kubernetes API call failed, retrying",
                    extra={
                        "verb": verb,
                        "resource": resource.plural,
                        "error": str(exc),
                        "in_s": round(wait, 2),
                    },
                )
                time.sleep(min(wait, self.retry.max_delay))
                delay = min(delay * 2, self.retry.max_delay)
        raise AssertionError("unreachable")

    # -- the asynchronous layer (event loop) -----------------------------------------------------
    async def call(self, method: str, verb: str, resource: Resource, path: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        work = functools.partial(self.request_retried, method, verb, resource, path, **kwargs)
        return await loop.run_in_executor(self._pool, work)

    async def create(
        self, resource: Resource, namespace: str, body: JsonObject, *, dry_run: bool = False
    ) -> JsonObject:
        """Create; `dry_run`: validated and admitted by the server (strictly), never stored."""
        query = {"dryRun": "All", "fieldValidation": "Strict"} if dry_run else None
        result: JsonObject = await self.call(
            "POST", "create", resource, resource.path(namespace), body=body, query=query
        )
        return result

    async def apply(self, resource: Resource, namespace: str, body: JsonObject) -> JsonObject:
        """Server-side apply: create or update to exactly these fields (ours), in one call."""
        name = body["metadata"]["name"]
        result: JsonObject = await self.call(
            "PATCH",
            "patch",
            resource,
            resource.path(namespace, name),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=body,
            content_type=APPLY,
        )
        return result

    async def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Set a Deployment's replicas through its /scale subresource (what an HPA would patch)."""
        await self.call(
            "PATCH",
            "patch",
            DEPLOYMENT_SCALE,
            DEPLOYMENTS.path(namespace, deployment) + "/scale",
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete with background propagation (dependents go too); False if it was already gone."""
        try:
            await self.call(
                "DELETE",
                "delete",
                resource,
                resource.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_collection(self, resource: Resource, namespace: str, selector: str) -> None:
        await self.call(
            "DELETE",
            "deletecollection",
            resource,
            resource.path(namespace),
            query={"labelSelector": selector},
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )

    async def list(self, resource: Resource, namespace: str, selector: str) -> JsonObject:
        result: JsonObject = await self.call(
            "GET", "list", resource, resource.path(namespace), query={"labelSelector": selector}
        )
        return result

    async def pod_events(self, namespace: str, name: str, uid: str) -> builtins.list[JsonObject]:
        """The events about one pod (FailedMount, FailedScheduling...), or [] if they cannot be read."""
        selector = f"involvedObject.kind=Pod,involvedObject.name={name},involvedObject.uid={uid}"
        try:
            found = await self.call(
                "GET", "list", EVENTS, EVENTS.path(namespace), query={"fieldSelector": selector}
            )
        except ApiError:
            return []
        return list(found.get("items") or ())

    async def log_tail(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> str:
        """The last lines a container wrote, or "" if unavailable.

        `previous`: the run before a restart (a crash loop), falling back to the current one.
        """
        for earlier in (True, False) if previous else (False,):
            query: dict[str, str | int | bool] = {"container": container, "tailLines": 20, "limitBytes": 4096}
            if earlier:
                query["previous"] = "true"
            path = PODS.path(namespace, pod) + "/log"
            try:
                data = await self.call("GET", "get", POD_LOGS, path, query=query, raw=True)
            except ApiError:
                continue
            return " ".join(bytes(data).decode("utf-8", "replace").split())[-1000:]
        return ""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _status_error(status: int, data: bytes, headers: Mapping[str, str]) -> ApiError:
    reason, message = "", ""
    try:
        parsed = json.loads(data) if data else {}
        reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))
    except (ValueError, AttributeError):
        message = data[:200].decode("utf-8", "replace")
    error = ApiError(status, reason, message)
    retry_after = headers.get("Retry-After", "") if headers else ""
    if retry_after.isdigit():
        error.retry_after = float(retry_after)
    return error
