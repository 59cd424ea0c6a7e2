"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for, from a CRD's printer columns.

kubectl sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever columns the server
defines, so the READY and STATUS columns of `kubectl get kustomizations` come from the server, as on a real
cluster (k8s.io/apiextensions-apiserver, pkg/registry/customresource/tableconvertor). Columns are the name,
then the CRD's additionalPrinterColumns; with none, the name and the age.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

_STEP = re.compile(r'\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_.-]+)==["\']([^"\']*)["\']\)\]|\[(\d+)\]')


def wants_table(accept: str) -> bool:
    """Whether the client asked for a Table (kubectl get does; other clients ask for plain JSON)."""
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def table(
    columns: Sequence[Mapping[str, Any]], objects: Sequence[Mapping[str, Any]], resource_version: str
) -> dict[str, Any]:
    """A Table of `objects`, one row each, with the row's object as PartialObjectMetadata (includeObject=Metadata)."""
    printed = list(columns) or [AGE_COLUMN]
    definitions = [NAME_COLUMN] + [
        {
            "name": column["name"],
            "type": column.get("type", "string"),
            "format": column.get("format", ""),
            "description": column.get("description", ""),
            "priority": int(column.get("priority", 0)),
        }
        for column in printed
    ]
    rows = [
        {
            "cells": [obj["metadata"]["name"], *(_cell(column, obj) for column in printed)],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(column: Mapping[str, Any], obj: Mapping[str, Any]) -> Any:
    value = json_path(str(column.get("jsonPath", "")), obj)
    if value is None:
        return None
    if column.get("type") == "date":
        return human_age(str(value))
    if column.get("type") in ("integer", "number", "boolean"):
        return value
    return value if isinstance(value, str) else str(value)


def json_path(path: str, obj: Any) -> Any:
    """The first value at a simple JSONPath: `.a.b`, `[0]`, and `[?(@.type=="Ready")]`, as printer columns use."""
    current = obj
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return None
        position = step.end()
        field, filter_field, filter_value, index = step.groups()
        if field is not None:
            current = current.get(field) if isinstance(current, Mapping) else None
        elif filter_field is not None:
            items = current if isinstance(current, list) else []
            current = next(
                (item for item in items if str(json_path(f".{filter_field}", item)) == filter_value),
                None,
            )
        else:
            items = current if isinstance(current, list) else []
            current = items[int(index)] if int(index) < len(items) else None
        if current is None:
            return None
    return current


def human_age(timestamp: str, *, now: float | None = None) -> str:
    """An RFC 3339 time as the age kubectl shows (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    try:
        then = calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<invalid>"
    seconds = int((time.time() if now is None else now) - then)
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years = hours // 24 // 365
        return f"{years}y{hours // 24 % 365}d" if hours // 24 % 365 else f"{years}y"
    return f"{hours // 24 // 365}y"
