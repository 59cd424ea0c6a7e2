"""The OpenAPI documents a client downloads before it writes: /openapi/v2 and /openapi/v3 for the served kinds.

kubectl validates what it applies unless told not to. Since 1.27 it first asks /openapi/v3 whether the server
validates fields itself (a `fieldValidation` query parameter on the kind's PATCH operation,
k8s.io/cli-runtime pkg/resource/query_param_verifier_v3.go) and then leaves validation to the server;
otherwise it validates against /openapi/v2. Without either, `kubectl apply` stops with "failed to download
openapi". The schemas are as loose as the simulator's CRDs: objects that preserve unknown fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol


class Served(Protocol):
    """What the documents need to know of a served resource (the API server's ResourceType)."""

    @property
    def group(self) -> str: ...
    @property
    def versions(self) -> tuple[str, ...]: ...
    @property
    def kind(self) -> str: ...
    @property
    def plural(self) -> str: ...
    @property
    def namespaced(self) -> bool: ...
    @property
    def custom(self) -> bool: ...


QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def definition_name(group: str, version: str, kind: str) -> str:
    """The definition name the real server uses: the group reversed, as in io.k8s.api.core.v1.ConfigMap."""
    if not group:
        return f"io.k8s.api.core.{version}.{kind}"
    return ".".join([*reversed(group.split(".")), version, kind])


def group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def v3_root(served: Iterable[Served]) -> dict[str, Any]:
    """/openapi/v3: one entry per group version, each pointing at its own document (the hash is a cache key)."""
    paths = {group_version_path(rtype.group, version) for rtype in served for version in rtype.versions}
    return {
        "paths": {
            path: {
                "serverRelativeURL": f"/openapi/v3/{path}?hash={hashlib.sha512(path.encode()).hexdigest()[:32].upper()}"
            }
            for path in sorted(paths)
        }
    }


def v3_group_version(served: Iterable[Served], group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI 3 document of one group version, or None when nothing is served there."""
    kinds = [rtype for rtype in served if rtype.group == group and version in rtype.versions]
    if not kinds:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rtype in kinds:
        gvk = {"group": group, "version": version, "kind": rtype.kind}
        name = definition_name(group, version, rtype.kind)
        schemas[name] = _schema(gvk)
        reference = {"$ref": f"#/components/schemas/{name}"}
        parameters = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in QUERY_PARAMETERS]
        body = {"content": {"application/json": {"schema": reference}}}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}
        item = {
            "get": {"operationId": f"read{rtype.kind}", "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "put": {
                "operationId": f"replace{rtype.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters,
                "requestBody": body,
                "responses": ok,
            },
            "patch": {
                "operationId": f"patch{rtype.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters,
                "requestBody": {"content": {media: {"schema": {"type": "object"}} for media in _patch_types(rtype)}},
                "responses": ok,
            },
            "delete": {"operationId": f"delete{rtype.kind}", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        }
        base = f"/{group_version_path(group, version)}"
        scope = f"{base}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"{base}/{rtype.plural}"
        paths[f"{scope}/{{name}}"] = item
        paths[scope] = {
            "get": {"operationId": f"list{rtype.kind}", "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "post": {
                "operationId": f"create{rtype.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters,
                "requestBody": body,
                "responses": ok,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.20.2-fluxmon-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v2(served: Iterable[Served]) -> dict[str, Any]:
    """/openapi/v2 (Swagger 2.0, as JSON): a definition per served kind and version, with its group version kind."""
    definitions = {}
    paths: dict[str, Any] = {}
    for rtype in served:
        for version in rtype.versions:
            gvk = {"group": rtype.group, "version": version, "kind": rtype.kind}
            name = definition_name(rtype.group, version, rtype.kind)
            definitions[name] = _schema(gvk)
            base = f"/{group_version_path(rtype.group, version)}"
            scope = f"{base}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"{base}/{rtype.plural}"
            paths[f"{scope}/{{name}}"] = {
                "patch": {
                    "operationId": f"patch{rtype.kind}",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [{"name": p, "in": "query", "type": "string"} for p in QUERY_PARAMETERS],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": f"#/definitions/{name}"}}},
                }
            }
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.20.2-fluxmon-sim"},
        "paths": paths,
        "definitions": definitions,
    }


def _patch_types(rtype: Served) -> tuple[str, ...]:
    """The PATCH bodies accepted: strategic merge only for built-in kinds, as on a real server (kubectl reads this
    to decide whether to send a strategic merge patch)."""
    common = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")
    return common if rtype.custom else (*common, "application/strategic-merge-patch+json")


def _schema(gvk: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "x-kubernetes-group-version-kind": [gvk],
    }
