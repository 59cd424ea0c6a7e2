"""The patch formats and selectors of the Kubernetes API, as pure functions over JSON values."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied; the API answers 422 (or 400 for a malformed patch)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy and test, applied in order to a copy."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid operation: {operation!r}")
        op = operation["op"]
        path = _pointer(operation["path"])
        if op == "add":
            result = _add(result, path, copy.deepcopy(_value(operation)))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            result = _remove(result, path)
            result = _add(result, path, copy.deepcopy(_value(operation)))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            value = copy.deepcopy(_get(result, source))
            if op == "move":
                result = _remove(result, source)
            result = _add(result, path, value)
        elif op == "test":
            if _get(result, path) != _value(operation):
                raise PatchError(f"test operation failed at {operation['path']}")
        else:
            raise PatchError(f"unknown operation {op!r}")
    return result


def _value(operation: Mapping[str, Any]) -> Any:
    if "value" not in operation:
        raise PatchError(f"operation {operation['op']} needs a value")
    return operation["value"]


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise PatchError(f"invalid JSON pointer {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:]]


def _get(document: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(document, Mapping) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            raise PatchError(f"path /{'/'.join(path)} does not exist")
    return document


def _add(document: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1])
    key = path[-1]
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        index = len(parent) if key == "-" else _index(key, len(parent) + 1)
        parent.insert(index, value)
    else:
        raise PatchError(f"cannot add at /{'/'.join(path)}")
    return document


def _remove(document: Any, path: list[str]) -> Any:
    if not path:
        raise PatchError("cannot remove the whole document")
    parent = _get(document, path[:-1])
    key = path[-1]
    if isinstance(parent, dict) and key in parent:
        del parent[key]
    elif isinstance(parent, list):
        del parent[_index(key, len(parent))]
    else:
        raise PatchError(f"path /{'/'.join(path)} does not exist")
    return document


def _index(key: str, bound: int) -> int:
    if not key.isdigit() or int(key) >= bound:
        raise PatchError(f"invalid array index {key!r}")
    return int(key)


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*$"
)


def parse_label_selector(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """`a=b,c!=d,e,!f,g in (x,y),h notin (z)` as (key, operator, values); raises ValueError when malformed."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in re.split(r",(?![^()]*\))", text):
        if not part.strip():
            continue
        match = _REQUIREMENT.match(part)
        if not match:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        if match["absent"]:
            requirements.append((match["absent"], "!", frozenset()))
        elif match["op"]:
            requirements.append((match["key"], "!=" if match["op"] == "!=" else "=", frozenset({match["value"]})))
        elif match["setop"]:
            values = frozenset(v.strip() for v in match["set"].split(",") if v.strip())
            requirements.append((match["key"], match["setop"], values))
        else:
            requirements.append((match["key"], "exists", frozenset()))
    return requirements


def labels_match(labels: Mapping[str, str], requirements: list[tuple[str, str, frozenset[str]]]) -> bool:
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "!=": not present or value not in values,
            "in": present and value in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[operator]
        if not ok:
            return False
    return True


def parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    """`metadata.name=x,involvedObject.kind!=Pod` as (dotted path, equal?, value)."""
    selectors = []
    for part in text.split(","):
        if not part.strip():
            continue
        negate = "!=" in part
        key, _, value = part.partition("!=" if negate else ("==" if "==" in part else "="))
        if not key.strip():
            raise ValueError(f"invalid field selector: {part!r}")
        selectors.append((key.strip(), not negate, value.strip()))
    return selectors


def fields_match(obj: Mapping[str, Any], selectors: list[tuple[str, bool, str]]) -> bool:
    for path, equal, expected in selectors:
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        actual = "" if value is None else str(value)
        if (actual == expected) != equal:
            return False
    return True
