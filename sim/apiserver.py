"""A Kubernetes-compatible API server on loopback: enough of the real one that clients cannot tell.

It serves discovery, CRD registration, list (selectors, limit/continue), watch (chunked JSON events, resume from
a resourceVersion, 410 Expired when that is too old, BOOKMARKs, timeoutSeconds), create, get, replace (with
resourceVersion preconditions), merge and JSON patch (415 for strategic merge on custom resources), delete with
finalizers, the /status subresource and metav1.Status errors, with bearer-token auth and a pluggable authorizer.

Differences from a real kube-apiserver that tests tolerate are listed in TOLERATED_DIFFERENCES; the conformance
test sends the same probes here and to a real kube-apiserver.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from fluxmon.sim import openapi, tables
from fluxmon.sim.patching import (
    PatchError,
    fields_match,
    json_patch,
    labels_match,
    merge_patch,
    parse_field_selector,
    parse_label_selector,
)

HISTORY_EVENTS = 10_000
"""Watch events kept for resuming; a watch from an older resourceVersion gets 410 Expired, as after compaction."""
MAX_BODY_BYTES = 3 * 1024 * 1024
"""The real API server's request size limit."""
BOOKMARK_INTERVAL_SECONDS = 1.0
"""How often a bookmark is sent on a quiet watch that asked for them (the real server: about once a minute)."""
SERVER_VERSION = {"major": "1", "minor": "20", "gitVersion": "v1.20.2-fluxmon-sim", "platform": "linux/amd64"}

TOLERATED_DIFFERENCES = (
    "list pagination serves the current state, not a snapshot at the first page's resourceVersion",
    "strategic merge patch on built-in kinds is applied as a JSON merge patch (lists replaced, not merged by key)",
    "server-side apply merges the applied object as a JSON merge patch: no managedFields, no conflicts, and "
    "fields a manager stops applying are kept",
    "no admission or schema validation beyond apiVersion, kind and metadata.name; defaulting only applies a "
    "CRD schema's `default` values",
    "/openapi/v2 is served as JSON only (a protobuf request gets 406); kubectl validates through /openapi/v3",
    "server-side printing (Tables) only for custom resources; built-in kinds are listed as plain JSON",
    "deleting a namespace does not delete what is in it",
    "bookmarks come every second on a quiet watch, not every minute",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceType:
    """One served resource: `kustomizations` in `kustomize.toolkit.fluxcd.io`, served at given versions."""

    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    namespaced: bool = True
    has_status: bool = True
    custom: bool = False
    short_names: tuple[str, ...] = ()
    schema: Mapping[str, Any] | None = None
    """The CRD's openAPIV3Schema, for its `default` values."""
    columns: tuple[Mapping[str, Any], ...] = ()
    """The CRD's additionalPrinterColumns, for the Tables `kubectl get` asks for."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


BUILTIN_TYPES = (
    ResourceType(group="", versions=("v1",), kind="Namespace", plural="namespaces", namespaced=False),
    ResourceType(group="", versions=("v1",), kind="ConfigMap", plural="configmaps", has_status=False),
    ResourceType(group="", versions=("v1",), kind="Secret", plural="secrets", has_status=False),
    ResourceType(group="", versions=("v1",), kind="Service", plural="services"),
    ResourceType(group="", versions=("v1",), kind="Event", plural="events", has_status=False),
    ResourceType(group="apps", versions=("v1",), kind="Deployment", plural="deployments"),
    ResourceType(
        group="apiextensions.k8s.io",
        versions=("v1",),
        kind="CustomResourceDefinition",
        plural="customresourcedefinitions",
        namespaced=False,
    ),
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

Authorizer = Callable[[str, str, str, str, str], bool]
"""(user, verb, group, resource, namespace) -> allowed."""


class ApiError(Exception):
    """An error answered as a metav1.Status."""

    def __init__(
        self, code: int, reason: str, message: str, *, details: Mapping[str, Any] | None = None, plain: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})
        self.plain = plain
        """Answered as plain text, not a Status: the real server does that for paths it does not route at all."""

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


PAGE_NOT_FOUND = ApiError(404, "NotFound", "404 page not found", plain=True)


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{rtype.qualified} "{name}" not found',
        details={"name": name, "group": rtype.group, "kind": rtype.plural},
    )


@dataclass
class _WatchEvent:
    rv: int
    key: tuple[str, str]
    type: str
    obj: dict[str, Any]


@dataclass
class Store:
    """Objects by resource and (namespace, name), a global resourceVersion, and a history for watches."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    rv: int = 1
    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    history: deque[_WatchEvent] = field(default_factory=lambda: deque(maxlen=HISTORY_EVENTS))
    oldest_rv: int = 1
    """Events after this resourceVersion are all still in `history`; older ones are gone."""

    def record(self, key: tuple[str, str], event_type: str, obj: dict[str, Any]) -> None:
        """Append an event; the caller holds the lock and has set obj's resourceVersion to self.rv."""
        if len(self.history) == self.history.maxlen:
            self.oldest_rv = self.history[0].rv
        self.history.append(_WatchEvent(rv=self.rv, key=key, type=event_type, obj=copy.deepcopy(obj)))
        self.lock.notify_all()


class SimApiServer:
    """The simulated API server. `start()` binds a loopback port; `stop()` closes every connection, watches too."""

    def __init__(
        self,
        *,
        port: int = 0,
        tokens: Mapping[str, str] | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.store = Store()
        self.types: dict[tuple[str, str], ResourceType] = {t.key: t for t in BUILTIN_TYPES}
        self.tokens = dict(tokens or {})
        """Bearer token -> user name."""
        self.allow_anonymous = not self.tokens
        """Requests without a token act as system:admin (the default when no tokens are configured)."""
        self.authorizer = authorizer
        self.requests = 0
        """Requests served, for the benchmarks."""
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watch_generation = 0
        self._expire_generation = 0
        self.open_watches = 0
        for name in DEFAULT_NAMESPACES:
            self.create(self.types[("", "namespaces")], "v1", "", {"metadata": {"name": name}})
        # Like a real server's watch cache, history starts when the server does: older versions get 410.
        self.compact()

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the API server is not started")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def serving(self) -> bool:
        """Started and not stopped: a cluster that `stop()` took down answers no request until `start()`."""
        return self._httpd is not None

    def start(self) -> None:
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self._port), _Handler, self)
        self._port = self._httpd.server_port  # a restart comes back on the same port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-apiserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; the store is kept, so `start()` again models a cluster that comes back."""
        if self._httpd is None:
            return
        self._stopping.set()
        with self.store.lock:
            self.store.lock.notify_all()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    # --- fault injection for tests ---------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: resuming from any earlier version gets 410."""
        with self.store.lock:
            self.store.history.clear()
            self.store.oldest_rv = self.store.rv

    def drop_watches(self) -> None:
        """Cut every open watch stream, as a load balancer or an API server restart would."""
        with self.store.lock:
            self._watch_generation += 1
            self.store.lock.notify_all()

    def wait_for_watches(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` watches are open (tests use it before cutting or expiring them)."""
        with self.store.lock:
            return self.store.lock.wait_for(lambda: self.open_watches >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate` (which may read this server's objects) holds, woken by every change to the store:
        how an in-process harness waits on the cluster's state without polling. False after `timeout` seconds."""
        with self.store.lock:
            return self.store.lock.wait_for(predicate, timeout)

    def expire_watches(self) -> None:
        """End every open watch with ERROR 410 Expired, as a real server does to watchers it can no longer serve."""
        with self.store.lock:
            self._expire_generation += 1
            self.store.lock.notify_all()

    # --- the API, as Python (the HTTP handler and tests both call these) -------------------------------------

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.types.get((group, plural))
        if rtype is None or version not in rtype.versions:
            raise PAGE_NOT_FOUND
        return rtype

    def get(self, rtype: ResourceType, version: str, namespace: str, name: str) -> dict[str, Any]:
        with self.store.lock:
            current = self._objects(rtype).get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            return self._versioned(rtype, version, current)

    def list(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        labels, fields_ = _selectors(label_selector, field_selector)
        start_after: tuple[str, str] | None = None
        if continue_token:
            start_after = _decode_continue(continue_token)
        with self.store.lock:
            items = [
                obj
                for key, obj in sorted(self._objects(rtype).items())
                if (not namespace or key[0] == namespace)
                and (start_after is None or key > start_after)
                and _selected(obj, labels, fields_)
            ]
            rv = self.store.rv
            metadata: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                last = items[limit - 1]["metadata"]
                metadata["continue"] = _encode_continue(last.get("namespace", ""), last["name"])
                metadata["remainingItemCount"] = len(items) - limit
                items = items[:limit]
            return {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version(version),
                "metadata": metadata,
                "items": [self._served(rtype, version, obj) for obj in items],
            }

    def create(self, rtype: ResourceType, version: str, namespace: str, body: Any) -> dict[str, Any]:
        with self.store.lock:
            return self._versioned(rtype, version, self._create(rtype, version, namespace, body))

    def replace(
        self, rtype: ResourceType, version: str, namespace: str, name: str, body: Any, *, status: bool = False
    ) -> dict[str, Any]:
        body = _object_body(rtype, version, body)
        if body["metadata"].get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self.store.lock:
            current = self._objects(rtype).get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            requested = str(body["metadata"].get("resourceVersion", ""))
            if not requested:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rtype.kind}.{rtype.group} "{name}" is invalid: metadata.resourceVersion: Invalid value: '
                    f"0x0: must be specified for an update",
                )
            return self._versioned(rtype, version, self._update(rtype, current, body, status=status))

    def patch(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        kind = content_type.split(";")[0].strip()
        if kind == "application/apply-patch+yaml":
            return self.apply(rtype, version, namespace, name, patch, status=status)[0]
        strategic_on_custom = kind == "application/strategic-merge-patch+json" and rtype.custom
        if strategic_on_custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json-patch+json, application/merge-patch+json"
                f"{'' if rtype.custom else ', application/strategic-merge-patch+json'}",
            )
        with self.store.lock:
            current = self._objects(rtype).get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            try:
                if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    updated = merge_patch(current, patch)
                elif kind == "application/json-patch+json":
                    updated = json_patch(current, patch)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {kind!r}")
            except PatchError as exc:
                raise ApiError(422, "Invalid", f"the server rejected our request: {exc}") from exc
            if not isinstance(updated, dict) or not isinstance(updated.get("metadata"), dict):
                raise ApiError(422, "Invalid", "the patch removed the object's metadata")
            # A resourceVersion the patch sets is a precondition; one it merely carries over is the current one.
            requested = _patched_resource_version(patch, kind)
            updated["metadata"]["resourceVersion"] = requested or current["metadata"]["resourceVersion"]
            return self._versioned(rtype, version, self._update(rtype, current, updated, status=status))

    def apply(
        self, rtype: ResourceType, version: str, namespace: str, name: str, body: Any, *, status: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply: create the object, or merge the applied fields into it (see TOLERATED_DIFFERENCES).

        Returns the object and whether it was created."""
        applied = _object_body(rtype, version, body)
        if applied["metadata"].get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        applied["metadata"]["name"] = name
        with self.store.lock:
            current = self._objects(rtype).get((namespace, name))
            if current is None:
                if status:
                    raise not_found(rtype, name)
                return self._versioned(rtype, version, self._create(rtype, version, namespace, applied)), True
            patch = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}
            patch["metadata"] = {k: v for k, v in applied["metadata"].items() if k != "resourceVersion"}
            updated = merge_patch(current, patch)
            # A resourceVersion in the applied object is a precondition, as with any write.
            updated["metadata"]["resourceVersion"] = str(
                applied["metadata"].get("resourceVersion") or current["metadata"]["resourceVersion"]
            )
            return self._versioned(rtype, version, self._update(rtype, current, updated, status=status)), False

    def delete(self, rtype: ResourceType, version: str, namespace: str, name: str) -> dict[str, Any]:
        with self.store.lock:
            objects = self._objects(rtype)
            current = objects.get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            if current["metadata"].get("finalizers"):
                if "deletionTimestamp" not in current["metadata"]:
                    updated = copy.deepcopy(current)
                    updated["metadata"]["deletionTimestamp"] = _now()
                    updated["metadata"]["deletionGracePeriodSeconds"] = 0
                    self._store(rtype, updated, "MODIFIED")
                    return self._versioned(rtype, version, updated)
                return self._versioned(rtype, version, current)
            del objects[(namespace, name)]
            self.store.rv += 1
            gone = copy.deepcopy(current)
            gone["metadata"]["resourceVersion"] = str(self.store.rv)
            self.store.record(rtype.key, "DELETED", gone)
            return self._versioned(rtype, version, gone)

    def watch(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        bookmarks: bool = False,
        timeout_seconds: float = 1800.0,
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events; ends at the timeout, on stop, or when watches are dropped."""
        labels, fields_ = _selectors(label_selector, field_selector)
        deadline = time.monotonic() + timeout_seconds
        with self.store.lock:
            generation = self._watch_generation
            expiry = self._expire_generation
            if resource_version in ("", "0"):
                # "Start at most recent": the current objects as ADDED, then changes from here.
                since = self.store.rv
                initial = [
                    {"type": "ADDED", "object": self._served(rtype, version, obj)}
                    for key, obj in sorted(self._objects(rtype).items())
                    if (not namespace or key[0] == namespace) and _selected(obj, labels, fields_)
                ]
            else:
                since = _parse_rv(resource_version)
                initial = []
                if since < self.store.oldest_rv:
                    initial = [_expired(since, self.store.oldest_rv)]
        yield from initial
        if initial and initial[-1]["type"] == "ERROR":
            return
        with self.store.lock:
            self.open_watches += 1
            self.store.lock.notify_all()
        try:
            yield from self._follow(
                rtype, version, namespace, since, generation, expiry, deadline, labels, fields_, bookmarks
            )
        finally:
            with self.store.lock:
                self.open_watches -= 1

    def _follow(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        since: int,
        generation: int,
        expiry: int,
        deadline: float,
        labels: Any,
        fields_: Any,
        bookmarks: bool,
    ) -> Iterator[dict[str, Any]]:
        """The events of a watch after its initial state, until it ends."""
        last_bookmark = time.monotonic()
        while True:
            pending: list[dict[str, Any]] = []
            finished = False
            with self.store.lock:
                while not pending and not finished:
                    now = time.monotonic()
                    if self._stopping.is_set() or generation != self._watch_generation or now >= deadline:
                        return
                    if since < self.store.oldest_rv or expiry != self._expire_generation:
                        # The history this watch needs is gone (compaction): the client must list again.
                        pending.append(_expired(since, self.store.oldest_rv))
                        finished = True
                        break
                    newer = []
                    for event in reversed(self.store.history):  # newest first: stop at what was already sent
                        if event.rv <= since:
                            break
                        newer.append(event)
                    if newer:
                        since = newer[0].rv
                    for event in reversed(newer):
                        obj = event.obj
                        if event.key != rtype.key:
                            continue
                        if namespace and obj["metadata"].get("namespace", "") != namespace:
                            continue
                        if _selected(obj, labels, fields_):
                            pending.append({"type": event.type, "object": self._served(rtype, version, obj)})
                    if pending:
                        break
                    if bookmarks and now - last_bookmark >= BOOKMARK_INTERVAL_SECONDS:
                        last_bookmark = now
                        pending.append(_bookmark(rtype, version, self.store.rv))
                        break
                    wait = min(deadline - now, BOOKMARK_INTERVAL_SECONDS if bookmarks else deadline - now)
                    self.store.lock.wait(timeout=max(wait, 0.01))
            yield from pending  # outside the lock: a slow client must not stall the server
            if finished:
                return

    # --- internals (the store lock is held) ------------------------------------------------------------------

    def _objects(self, rtype: ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self.store.objects.setdefault(rtype.key, {})

    def _versioned(self, rtype: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy as the client asked for it (custom resources are schema-less, so only apiVersion changes)."""
        result = copy.deepcopy(obj)
        result["apiVersion"] = rtype.api_version(version)
        result["kind"] = rtype.kind
        return result

    def _served(self, rtype: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        """`_versioned` for what is only serialized (list items, watch events): a top-level copy is enough, since a
        stored object is never changed once stored (every write stores a new one), and it keeps a list of 10,000
        objects from deep-copying each."""
        return {**obj, "apiVersion": rtype.api_version(version), "kind": rtype.kind}

    def _create(self, rtype: ResourceType, version: str, namespace: str, body: Any) -> dict[str, Any]:
        obj = _object_body(rtype, version, body)
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required value: name is required")
        if rtype.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the URL")
            if ("", namespace) not in self._objects(self.types[("", "namespaces")]):
                raise ApiError(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    details={"name": namespace, "kind": "namespaces"},
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        key = (namespace if rtype.namespaced else "", name)
        if key in self._objects(rtype):
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{name}" already exists',
                details={"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now()
        for transient in ("resourceVersion", "deletionTimestamp", "selfLink"):
            metadata.pop(transient, None)
        if rtype.custom or rtype.kind == "Deployment":
            metadata["generation"] = 1
        if rtype.has_status and rtype.custom:
            obj.pop("status", None)  # with a status subresource, create ignores status
        if rtype.kind == "CustomResourceDefinition":
            self._register_crd(obj)
        self._store(rtype, obj, "ADDED")
        return obj

    def _update(
        self, rtype: ResourceType, current: dict[str, Any], body: dict[str, Any], *, status: bool
    ) -> dict[str, Any]:
        metadata = current["metadata"]
        requested = str(body["metadata"].get("resourceVersion", ""))
        if requested and requested != metadata["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.qualified} "{metadata["name"]}": the object has been '
                f"modified; please apply your changes to the latest version and try again",
                details={"name": metadata["name"], "group": rtype.group, "kind": rtype.plural},
            )
        if status:
            # The status subresource writes status only.
            updated = copy.deepcopy(current)
            if "status" in body:
                updated["status"] = body["status"]
        else:
            updated = copy.deepcopy(body)
            if rtype.has_status and rtype.custom:
                updated["status"] = copy.deepcopy(current.get("status"))
                if updated["status"] is None:
                    del updated["status"]
            new_metadata = updated.setdefault("metadata", {})
            for kept in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp", "generation"):
                if kept in metadata:
                    new_metadata[kept] = metadata[kept]
                else:
                    new_metadata.pop(kept, None)
            if "generation" in metadata and _spec(updated) != _spec(current):
                new_metadata["generation"] = metadata["generation"] + 1
        if _same(updated, current):
            return current  # a no-op write does not bump the resourceVersion, as on the real server
        if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get("finalizers"):
            del self._objects(rtype)[(metadata.get("namespace", ""), metadata["name"])]
            self.store.rv += 1
            updated["metadata"]["resourceVersion"] = str(self.store.rv)
            self.store.record(rtype.key, "DELETED", updated)
            return updated
        self._store(rtype, updated, "MODIFIED")
        return updated

    def _store(self, rtype: ResourceType, obj: dict[str, Any], event_type: str) -> None:
        if rtype.schema is not None:
            _apply_defaults(rtype.schema, obj)
        self.store.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.store.rv)
        self._objects(rtype)[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
        self.store.record(rtype.key, event_type, obj)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = tuple(v["name"] for v in spec.get("versions") or [] if isinstance(v, Mapping) and v.get("served"))
        if not (spec.get("group") and names.get("plural") and names.get("kind") and versions):
            raise ApiError(422, "Invalid", "CustomResourceDefinition needs spec.group, names.plural/kind and versions")
        has_status = any(
            "status" in ((v.get("subresources") or {}) if isinstance(v, Mapping) else {})
            for v in spec.get("versions") or []
        )
        storage = next(
            (v for v in spec.get("versions") or [] if isinstance(v, Mapping) and v.get("served")),
            {},
        )
        rtype = ResourceType(
            group=spec["group"],
            versions=versions,
            kind=names["kind"],
            plural=names["plural"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            has_status=has_status,
            custom=True,
            short_names=tuple(names.get("shortNames") or ()),
            schema=copy.deepcopy((storage.get("schema") or {}).get("openAPIV3Schema")),
            columns=tuple(copy.deepcopy(storage.get("additionalPrinterColumns") or [])),
        )
        self.types[rtype.key] = rtype
        crd["status"] = {
            "acceptedNames": names,
            "storedVersions": list(versions[:1]),
            "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}],
        }

    # --- discovery ---------------------------------------------------------------------------------------------

    def discovery(self, path: str) -> dict[str, Any] | None:
        path = path.rstrip("/") or "/"  # clients ask for /apis/ as well as /apis
        if path == "/version":
            return dict(SERVER_VERSION)
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for rtype in self.types.values():
                if rtype.group:
                    groups.setdefault(rtype.group, [])
                    groups[rtype.group] += [v for v in rtype.versions if v not in groups[rtype.group]]
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": name,
                        "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                        "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
                    }
                    for name, versions in sorted(groups.items())
                ],
            }
        parts = path.strip("/").split("/")
        if parts == ["api", "v1"]:
            group, version = "", "v1"
        elif len(parts) == 3 and parts[0] == "apis":
            group, version = parts[1], parts[2]
        else:
            return None
        resources = []
        for rtype in self.types.values():
            if rtype.group != group or version not in rtype.versions:
                continue
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(
                {
                    "name": rtype.plural,
                    "singularName": rtype.kind.lower(),
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": verbs,
                    "shortNames": list(rtype.short_names),
                }
            )
            if rtype.has_status:
                resources.append(
                    {
                        "name": f"{rtype.plural}/status",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": rtype.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}".lstrip("/"),
            "resources": resources,
        }


def _object_body(rtype: ResourceType, version: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ApiError(400, "BadRequest", "the request body is not a JSON object")
    obj = copy.deepcopy(dict(body))
    if obj.get("kind", rtype.kind) != rtype.kind:
        raise ApiError(400, "BadRequest", f"the kind {obj.get('kind')!r} does not match the resource {rtype.plural}")
    obj["apiVersion"] = rtype.api_version(version)
    obj["kind"] = rtype.kind
    if not isinstance(obj.get("metadata"), Mapping):
        obj["metadata"] = {}
    obj["metadata"] = dict(obj["metadata"])
    return obj


def _apply_defaults(schema: Mapping[str, Any], value: dict[str, Any]) -> None:
    """Fill absent fields from the schema's `default`s, as a real server does when it reads an object from etcd."""
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        if name not in value and "default" in prop:
            value[name] = copy.deepcopy(prop["default"])
        if isinstance(value.get(name), dict):
            _apply_defaults(prop, value[name])


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that counts for `generation`: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def strip(obj: Mapping[str, Any]) -> dict[str, Any]:
        result = {k: v for k, v in obj.items() if k not in ("apiVersion",)}
        result["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        return result

    return strip(a) == strip(b)


def _selectors(label_selector: str, field_selector: str) -> tuple[Any, Any]:
    try:
        return parse_label_selector(label_selector), parse_field_selector(field_selector)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc


def _selected(obj: Mapping[str, Any], labels: Any, fields_: Any) -> bool:
    return labels_match(obj["metadata"].get("labels") or {}, labels) and fields_match(obj, fields_)


def _patched_resource_version(patch: Any, kind: str) -> str:
    if kind == "application/json-patch+json":
        for operation in patch if isinstance(patch, list) else []:
            if isinstance(operation, Mapping) and operation.get("path") == "/metadata/resourceVersion":
                return str(operation.get("value", ""))
        return ""
    metadata = patch.get("metadata") if isinstance(patch, Mapping) else None
    return str(metadata.get("resourceVersion", "")) if isinstance(metadata, Mapping) else ""


def _parse_rv(text: str) -> int:
    if not text.isdigit():
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {text!r}")
    return int(text)


def _expired(since: int, oldest: int) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": ApiError(410, "Expired", f"too old resource version: {since} ({oldest})").status(),
    }


def _bookmark(rtype: ResourceType, version: str, rv: int) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": rtype.kind,
            "apiVersion": rtype.api_version(version),
            "metadata": {"resourceVersion": str(rv)},
        },
    }


def _encode_continue(namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([namespace, name]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(namespace), str(name))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "BadRequest", "invalid continue token") from exc


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Server(ThreadingHTTPServer):
    """Tracks open connections so that stop() can cut keep-alive and watch connections at once."""

    daemon_threads = True
    block_on_close = True
    request_queue_size = 128  # socketserver's default of 5 refuses connections under a burst of clients

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: SimApiServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        api = self.server.api
        api.requests += 1
        try:
            body = self._read_body()
            user = self._authenticate()
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if method == "GET" and (found := api.discovery(url.path)) is not None:
                self._send_json(200, found)
                return
            if method == "GET" and url.path.startswith("/openapi/"):
                self._send_openapi(url.path)
                return
            self._route(method, url.path, query, body, user)
        except ApiError as error:
            if error.plain:
                self._send_text(error.code, error.message)
            else:
                self._send_json(error.code, error.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_openapi(self, path: str) -> None:
        api = self.server.api
        served = list(api.types.values())
        if path == "/openapi/v2":
            accept = self.headers.get("Accept") or "application/json"
            if "json" not in accept and "*/*" not in accept:  # kubectl asks for protobuf first (see TOLERATED_...)
                raise ApiError(406, "NotAcceptable", "only application/json is served for /openapi/v2")
            self._send_json(200, openapi.v2(served))
            return
        if path == "/openapi/v3":
            self._send_json(200, openapi.v3_root(served))
            return
        parts = path.removeprefix("/openapi/v3/").split("/")
        document = None
        if parts[:1] == ["api"] and len(parts) == 2:
            document = openapi.v3_group_version(served, "", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            document = openapi.v3_group_version(served, parts[1], parts[2])
        if document is None:
            raise PAGE_NOT_FOUND
        self._send_json(200, document)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Read what was sent (up to a bound) before answering, so the client sees the 413, not a reset.
            remaining = min(length, 16 * MAX_BODY_BYTES)
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 65536))):
                remaining -= len(chunk)
            self.close_connection = True
            raise ApiError(413, "RequestEntityTooLarge", "the request is too large")
        if not length:
            return None
        raw = self.rfile.read(length)
        if self.headers.get("Content-Type", "").startswith("application/apply-patch+yaml"):
            try:
                return yaml.safe_load(raw)  # JSON is YAML too; kubectl --server-side sends either
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", f"the request body is not valid YAML: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc

    def _authenticate(self) -> str:
        api = self.server.api
        header = self.headers.get("Authorization", "")
        if not header and api.allow_anonymous:
            return "system:admin"
        user = api.tokens.get(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, user: str) -> None:
        api = self.server.api
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise PAGE_NOT_FOUND
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in api.types:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise PAGE_NOT_FOUND
        rtype = api.resolve(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if subresource and (subresource != "status" or not rtype.has_status):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({subresource})")
        watching = method == "GET" and not name and query.get("watch") in ("1", "true")
        verb = {
            "GET": "watch" if watching else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        self._authorize(user, verb, rtype, namespace, subresource)
        status = subresource == "status"
        if method == "GET" and watching:
            self._stream_watch(rtype, version, namespace, query)
        elif method == "GET" and name:
            found = api.get(rtype, version, namespace, name)
            self._send_json(200, self._printed(rtype, [found], found["metadata"]["resourceVersion"]) or found)
        elif method == "GET":
            limit = query.get("limit", "0")
            listing = api.list(
                rtype,
                version,
                namespace,
                label_selector=query.get("labelSelector", ""),
                field_selector=query.get("fieldSelector", ""),
                limit=int(limit) if limit.isdigit() else 0,
                continue_token=query.get("continue", ""),
            )
            printed = self._printed(rtype, listing["items"], listing["metadata"]["resourceVersion"])
            if printed is not None and listing["metadata"].get("continue"):
                printed["metadata"]["continue"] = listing["metadata"]["continue"]
            self._send_json(200, printed or listing)
        elif method == "POST" and not name:
            self._send_json(201, api.create(rtype, version, namespace, body))
        elif method == "PUT" and name:
            self._send_json(200, api.replace(rtype, version, namespace, name, body, status=status))
        elif method == "PATCH" and name:
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/apply-patch+yaml"):
                applied, created = api.apply(rtype, version, namespace, name, body, status=status)
                self._send_json(201 if created else 200, applied)
            else:
                self._send_json(200, api.patch(rtype, version, namespace, name, content_type, body, status=status))
        elif method == "DELETE" and name:
            self._send_json(200, api.delete(rtype, version, namespace, name))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _printed(
        self, rtype: ResourceType, objects: list[dict[str, Any]], resource_version: str
    ) -> dict[str, Any] | None:
        """The Table kubectl asked for, for a custom resource; None when plain JSON is wanted (or a built-in kind)."""
        if not rtype.custom or not tables.wants_table(self.headers.get("Accept", "")):
            return None
        return tables.table(rtype.columns, objects, resource_version)

    def _authorize(self, user: str, verb: str, rtype: ResourceType, namespace: str, subresource: str) -> None:
        authorizer = self.server.api.authorizer
        resource = f"{rtype.plural}/{subresource}" if subresource else rtype.plural
        if authorizer is None or authorizer(user, verb, rtype.group, resource, namespace):
            return
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        raise ApiError(
            403,
            "Forbidden",
            f'{rtype.qualified} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group '
            f'"{rtype.group}" {scope}',
            details={"group": rtype.group, "kind": rtype.plural},
        )

    def _stream_watch(self, rtype: ResourceType, version: str, namespace: str, query: dict[str, str]) -> None:
        timeout = query.get("timeoutSeconds", "")
        events = self.server.api.watch(
            rtype,
            version,
            namespace,
            resource_version=query.get("resourceVersion", ""),
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            bookmarks=query.get("allowWatchBookmarks") in ("1", "true"),
            timeout_seconds=float(timeout) if timeout.isdigit() else 1800.0,
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_text(self, code: int, text: str) -> None:
        data = f"{text}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
