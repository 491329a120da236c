"""The four PATCH content types: JSON merge, strategic merge, JSON patch, and server-side apply.

Strategic merge walks the kind's real schema (:class:`fakekube.schema.SchemaNode`), so lists merge
by the same ``x-kubernetes-patch-merge-key`` the API server uses (containers and env by ``name``,
ports by ``containerPort``, conditions by ``type``...), and the directives kubectl sends
(``$patch``, ``$setElementOrder/``, ``$retainKeys``, ``$deleteFromPrimitiveList/``) are honoured.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .errors import ApiError, bad_request
from .schema import SchemaNode

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH, APPLY_PATCH)


def _invalid_patch(message: str) -> ApiError:
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(original: Any, patch: Any, schema: SchemaNode) -> Any:
    """Apply a strategic merge patch to ``original`` following the schema's patch metadata."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if not isinstance(original, Mapping) or schema.map_type == "atomic":
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type: {directive}")
    result = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if key.startswith(("$setElementOrder/", "$deleteFromPrimitiveList/")):
            continue
        field = schema.prop(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            merged = strategic_merge(result.get(key), value, field)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, field)
        else:
            result[key] = copy.deepcopy(value)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [item for item in result[name] if item not in value]
        elif key.startswith("$setElementOrder/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = _reorder(result[name], value, schema.prop(name).merge_key)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], schema: SchemaNode) -> list[Any]:
    if "merge" not in schema.patch_strategies:
        return [item for item in copy.deepcopy(patch) if not (isinstance(item, Mapping) and "$patch" in item)]
    current = list(original) if isinstance(original, list) else []
    key = schema.merge_key
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, Mapping) and "$patch" in item)]
    if key is None:
        merged = list(current)
        for item in patch:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        return merged
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next(
            (i for i, old in enumerate(current) if isinstance(old, Mapping) and old.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                current.pop(index)
            continue
        if index is None:
            current.append(strategic_merge({}, item, schema.items()))
        else:
            current[index] = strategic_merge(current[index], item, schema.items())
    return current


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, Mapping) else item

    wanted = [ident(o) if isinstance(o, Mapping) else o for o in order]
    ranked = sorted(
        range(len(items)),
        key=lambda i: wanted.index(ident(items[i])) if ident(items[i]) in wanted else len(wanted) + i,
    )
    return [items[i] for i in ranked]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _invalid_patch(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path.split("/")[1:]] if path else []


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise _invalid_patch(f"doc is missing path: /{'/'.join(tokens)}")
    return current, tokens[-1]


def _get(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise _invalid_patch(f"doc is missing path: /{'/'.join(tokens)}")
    return current


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _invalid_patch(f"add operation index out of range: {last}")
    else:
        raise _invalid_patch(f"doc is missing path: /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _invalid_patch("cannot remove the whole document")
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _invalid_patch(f"unable to remove nonexistent key: {last}: missing value")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``doc``; a failed ``test`` or a missing path is a 422."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, Mapping) or "op" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        name, tokens = op["op"], _pointer(op.get("path"))
        if name == "add":
            result = _add(result, tokens, copy.deepcopy(op.get("value")))
        elif name == "remove":
            _remove(result, tokens)
        elif name == "replace":
            _get(result, tokens)
            if not tokens:
                result = copy.deepcopy(op.get("value"))
            else:
                parent, last = _parent(result, tokens)
                parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op.get("value"))
        elif name in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = _remove(result, source) if name == "move" else copy.deepcopy(_get(result, source))
            result = _add(result, tokens, value)
        elif name == "test":
            if _get(result, tokens) != op.get("value"):
                raise _invalid_patch(f"testing value /{'/'.join(tokens)} failed: test failed")
        else:
            raise bad_request(f"unexpected op: {name}")
    return result


def remove_unapplied(live: Any, previous: Any, applied: Any, schema: SchemaNode) -> Any:
    """Server-side apply, simplified: drop what this manager applied before and applies no more.

    Real SSA tracks ownership per field across managers; here a manager's last applied
    configuration is remembered whole, and fields in it that are missing from the new one are
    removed from the live object (unless another write changed them meanwhile is not tracked).
    """
    if not isinstance(live, dict) or not isinstance(previous, Mapping):
        return live
    now = applied if isinstance(applied, Mapping) else {}
    for key, old in previous.items():
        if key not in now:
            live.pop(key, None)
        elif isinstance(old, Mapping) and isinstance(live.get(key), dict):
            live[key] = remove_unapplied(live[key], old, now[key], schema.prop(key))
        elif isinstance(old, list) and isinstance(live.get(key), list) and isinstance(now[key], list):
            field = schema.prop(key)
            keys = field.list_map_keys or ((field.merge_key,) if field.merge_key else ())
            if keys and field.list_type == "map":

                def ident(item: Any, keys: tuple[str, ...] = keys) -> tuple[Any, ...]:
                    return tuple(item.get(k) for k in keys) if isinstance(item, Mapping) else (item,)

                gone = {ident(i) for i in old} - {ident(i) for i in now[key]}
                live[key] = [i for i in live[key] if ident(i) not in gone]
                for i, item in enumerate(live[key]):
                    match_old = next((o for o in old if ident(o) == ident(item)), None)
                    match_new = next((n for n in now[key] if ident(n) == ident(item)), None)
                    if match_old is not None and match_new is not None:
                        live[key][i] = remove_unapplied(item, match_old, match_new, field.items())
            elif field.list_type == "set":
                gone_values = [v for v in old if v not in now[key]]
                live[key] = [v for v in live[key] if v not in gone_values]
    return live


def apply_patch(live: Any, previous: Any, applied: Mapping[str, Any], schema: SchemaNode) -> Any:
    """Merge an apply configuration into ``live`` (map lists by their list-map keys)."""
    pruned = remove_unapplied(copy.deepcopy(live), previous, applied, schema)
    return _apply_merge(pruned, applied, schema)


def _apply_merge(live: Any, applied: Any, schema: SchemaNode) -> Any:
    if isinstance(applied, Mapping):
        if schema.map_type == "atomic":
            return copy.deepcopy(dict(applied))
        result = dict(live) if isinstance(live, Mapping) else {}
        for key, value in applied.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _apply_merge(result.get(key), value, schema.prop(key))
        return result
    if isinstance(applied, list):
        keys = schema.list_map_keys or ((schema.merge_key,) if schema.merge_key else ())
        if schema.list_type == "map" and keys and isinstance(live, list):
            merged = list(live)
            for item in applied:
                ident = tuple(item.get(k) for k in keys) if isinstance(item, Mapping) else None
                index = next(
                    (
                        i
                        for i, old in enumerate(merged)
                        if isinstance(old, Mapping) and tuple(old.get(k) for k in keys) == ident
                    ),
                    None,
                )
                if index is None:
                    merged.append(_apply_merge({}, item, schema.items()))
                else:
                    merged[index] = _apply_merge(merged[index], item, schema.items())
            return merged
        if schema.list_type == "set" and isinstance(live, list):
            return list(live) + [v for v in applied if v not in live]
        return copy.deepcopy(applied)
    return copy.deepcopy(applied)
