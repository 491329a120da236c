"""OpenAPI v3 documents (/openapi/v3 and one per group-version), built from the same schemas.

kubectl downloads these before ``apply``: it looks for the ``fieldValidation`` query parameter on
each kind's PATCH operation (present here, so kubectl leaves validation to this server, as with a
real 1.27+ API server) and reads ``x-kubernetes-patch-merge-key`` from the component schemas to
compute strategic merge patches.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from .resources import ResourceRegistry, ResourceType
from .schema import GIT_VERSION, definitions, root_names


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _rewrite(schema: Any, refs: set[str]) -> Any:
    if isinstance(schema, list):
        return [_rewrite(item, refs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            name = value.rsplit("/", 1)[-1]
            refs.add(name)
            out[key] = f"#/components/schemas/{name}"
        else:
            out[key] = _rewrite(value, refs)
    return out


@functools.cache
def _closure(roots: tuple[str, ...]) -> dict[str, Any]:
    known = definitions()
    done: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in done or name not in known:
            continue
        refs: set[str] = set()
        done[name] = _rewrite(known[name], refs)
        todo.extend(refs - done.keys())
    return done


_PARAMS = {
    name: {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
}


def _operations(resource: ResourceType, schema_ref: str) -> dict[str, Any]:
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    body = {"content": {"application/json": {"schema": {"$ref": schema_ref}}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}}

    def op(action: str, params: Iterable[str], with_body: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {
            "operationId": f"{action}{resource.kind}",
            "responses": ok,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [_PARAMS[p] for p in params],
        }
        if with_body:
            found["requestBody"] = body
        return found

    prefix = "/" + _gv_path(resource.group, resource.version)
    collection = (
        f"{prefix}/namespaces/{{namespace}}/{resource.plural}"
        if resource.namespaced
        else f"{prefix}/{resource.plural}"
    )
    patch_op = op("patch", ("dryRun", "fieldManager", "fieldValidation", "force", "pretty"))
    patch_op["requestBody"] = {
        "content": {
            t: {"schema": {"type": "object"}}
            for t in (
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            )
        }
    }
    return {
        collection: {
            "get": op("list", ("pretty",)),
            "post": op("post", ("dryRun", "fieldManager", "fieldValidation", "pretty"), True),
        },
        f"{collection}/{{name}}": {
            "get": op("get", ("pretty",)),
            "put": op("put", ("dryRun", "fieldManager", "fieldValidation", "pretty"), True),
            "patch": patch_op,
            "delete": op("delete", ("dryRun", "pretty")),
        },
    }


def _custom_schema(resource: ResourceType) -> dict[str, Any]:
    base: dict[str, Any] = dict(resource.schema or {"type": "object"})
    properties = dict(base.get("properties") or {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    base["properties"] = properties
    base["x-kubernetes-group-version-kind"] = [
        {"group": resource.group, "version": resource.version, "kind": resource.kind}
    ]
    return base


def group_version_doc(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in registry if r.group == group and r.version == version]
    if not served:
        return None
    roots = root_names()
    names = sorted(
        roots[(r.group, r.version, r.kind)] for r in served if (r.group, r.version, r.kind) in roots
    )
    schemas = dict(_closure((*names, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")))
    paths: dict[str, Any] = {}
    for resource in served:
        if resource.schema is not None:
            name = f"{resource.group}.{resource.version}.{resource.kind}"
            schemas[name] = _custom_schema(resource)
        else:
            found = roots.get((resource.group, resource.version, resource.kind))
            if found is None:
                continue
            name = found
        paths.update(_operations(resource, f"#/components/schemas/{name}"))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


class OpenApi:
    """Serves the documents, cached per group-version until the registry changes."""

    def __init__(self, registry: ResourceRegistry) -> None:
        self.registry = registry
        self._cache: dict[tuple[str, str, str], bytes] = {}

    def _signature(self) -> str:
        return ",".join(sorted(f"{r.api_version}/{r.kind}/{id(r.schema)}" for r in self.registry))

    def document(self, group: str, version: str) -> bytes | None:
        key = (self._signature(), group, version)
        if key not in self._cache:
            doc = group_version_doc(self.registry, group, version)
            if doc is None:
                return None
            self._cache[key] = orjson.dumps(doc)
        return self._cache[key]

    def root(self) -> dict[str, Any]:
        paths = {}
        for group, versions in self.registry.group_versions().items():
            for version in versions:
                doc = self.document(group, version) or b""
                digest = hashlib.sha512(doc).hexdigest()[:32].upper()
                path = _gv_path(group, version)
                paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        return {"paths": paths}
