"""The one adapter to Kubernetes: the only module that imports the `kubernetes` package (import-linter checks).

Everything the client can raise is translated here, once, into the project's errors (core.errors), each with a
title and a message a user can act on: a missing or invalid kubeconfig, an unknown context, an unreachable
cluster, an expired token, missing RBAC permissions (naming the verbs and resources), Flux not installed. What
leaves this module is plain data: raw bodies as dicts, and watch events as dicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

from fluxmon.core.cluster import (
    PLURALS,
    ClusterError,
    ClusterUnreachable,
    FluxEvent,
    FluxNotInstalled,
    Forbidden,
    KindApi,
    KindMissing,
    KubeconfigError,
    Unauthorized,
    WatchExpired,
)
from fluxmon.core.kubeconfig import error_line, load_kubeconfig
from fluxmon.core.objects import FLUX_KINDS, REQUESTED_AT_ANNOTATION, ObjectRef

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 15.0
REQUEST_TIMEOUTS = (CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS)
"""Every request but a watch: (connect, read), so that no call waits forever on a silent server."""
LIST_PAGE_SIZE = 500
"""Objects per list request: client-go's reflector pages its lists by 500 (tools/pager, defaultPageSize)."""
WATCH_TIMEOUT_SECONDS = 60
"""The server ends each watch after this long (timeoutSeconds); the client read timeout is a little longer."""


class Cluster:
    """One cluster, through the official client. Thread-safe; counts its requests for the benchmarks."""

    page_size = LIST_PAGE_SIZE
    """Objects per list request."""

    def __init__(self, api_client: k8s.ApiClient, *, context: str, server: str) -> None:
        self._api = api_client
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        api_client.rest_client.pool_manager.pool_classes_by_scheme = _tracking_pools(self._connections)
        self.context = context
        self.server = server
        self._custom = k8s.CustomObjectsApi(api_client)
        self._streams: set[Any] = set()
        self._lock = threading.Lock()
        self.requests = 0

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        """Load credentials from the kubeconfig, merged as kubectl merges it (core/kubeconfig.py), or, inside a
        pod with no kubeconfig, from the service account; no request is made yet."""
        loaded = load_kubeconfig(kubeconfig)
        if not loaded.read:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
                configuration = k8s.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)
                return cls(k8s.ApiClient(configuration), context="in-cluster", server=configuration.host)
            raise loaded.missing_error(explicit=kubeconfig)
        chosen = loaded.context_to_use(context)
        document = loaded.client_document(chosen)
        configuration = k8s.Configuration()
        try:
            # The merged document, not the files: the client's own merger takes current-context from the last
            # file and fails on an empty one, where kubectl does neither.
            k8s_config.load_kube_config_from_dict(
                document, context=chosen, client_configuration=configuration, persist_config=False
            )
            configuration.retries = False  # we retry ourselves, with backoff, and report what happens
            api_client = k8s.ApiClient(configuration)
        except Exception as exc:  # the loader raises anything for a bad server URL, certificate or token field
            raise KubeconfigError(
                f"{loaded.description}, context {chosen!r}: its cluster or user entry cannot be loaded "
                f"({error_line(exc)})"
            ) from exc
        return cls(api_client, context=chosen, server=configuration.host)

    def close(self) -> None:
        self.cut_watches()
        self._api.close()

    # --- discovery ---------------------------------------------------------------------------------------------

    def discover(self, kinds: tuple[str, ...]) -> dict[str, KindApi]:
        """Where each Flux kind is served; raises FluxNotInstalled when no Flux API group is served at all."""
        groups = self._call(
            "discover the API groups",
            "get",
            "/apis",
            lambda: k8s.ApisApi(self._api).get_api_versions(_request_timeout=REQUEST_TIMEOUTS),
        )
        served = {group.name: group for group in groups.groups}
        found: dict[str, KindApi] = {}
        for kind in kinds:
            group = served.get(FLUX_KINDS[kind])
            if group is None:
                continue
            versions = [group.preferred_version.version] + [
                v.version for v in group.versions if v.version != group.preferred_version.version
            ]
            for version in versions:
                listing = self._call(
                    f"discover {group.name}/{version}",
                    "get",
                    f"/apis/{group.name}/{version}",
                    lambda g=group.name, v=version: self._custom.get_api_resources(
                        g, v, _request_timeout=REQUEST_TIMEOUTS
                    ),
                )
                if any(r.kind == kind and "/" not in r.name for r in listing.resources):
                    found[kind] = KindApi(kind=kind, group=group.name, version=version, plural=PLURALS[kind])
                    break
        if not found:
            raise FluxNotInstalled(
                f"Flux is not installed in context {self.context!r}: the API server at {self.server} serves none "
                f"of the Flux API groups ({', '.join(sorted(set(FLUX_KINDS.values())))}). Install it with "
                f"`flux install`, or pick another context with --context."
            )
        return found

    # --- reading -----------------------------------------------------------------------------------------------

    def list_kind(self, api: KindApi) -> tuple[str, Iterator[dict[str, Any]]]:
        """All objects of a kind across namespaces, and the list's resourceVersion.

        In pages of `page_size`, as client-go's reflector lists: the objects are handed on page by page, so a
        cluster of 10,000 objects is never held whole as JSON (the first page is read here, so that an error is
        raised at once; every page shares the first one's resourceVersion). A continue token that expired
        mid-list is a 410, and the informer lists again.
        """
        first = self._list_page(api, "")
        resource_version = str(first[0].get("resourceVersion") or "")

        def items() -> Iterator[dict[str, Any]]:
            metadata, page = first
            while True:
                yield from page
                token = str(metadata.get("continue") or "")
                if not token:
                    return
                metadata, page = self._list_page(api, token)

        return resource_version, items()

    def _list_page(self, api: KindApi, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One page of a list: its metadata, and the objects on it."""
        body = self._call(
            f"list {api.qualified}",
            "list",
            api.qualified,
            lambda: self._custom.list_cluster_custom_object(
                api.group,
                api.version,
                api.plural,
                limit=self.page_size,
                _continue=token or None,
                _request_timeout=REQUEST_TIMEOUTS,
            ),
        )
        metadata = body.get("metadata") if isinstance(body, dict) else None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(metadata, dict) or not isinstance(items, list | None):
            raise ClusterError(f"list {api.qualified} on {self.server}: the answer is not a Kubernetes list")
        return metadata, [item for item in items or [] if isinstance(item, dict)]

    def watch(
        self, api: KindApi, resource_version: str, *, stop: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]:
        """Watch events from `resource_version` (bookmarks asked for) until the server ends the watch.

        Both timeouts are set: the server's timeoutSeconds ends a quiet watch, and the client's read timeout
        catches a connection that died silently. cut_watches() ends it at once from another thread.
        """
        response = self._call(
            f"watch {api.qualified}",
            "watch",
            api.qualified,
            lambda: self._custom.list_cluster_custom_object(
                api.group,
                api.version,
                api.plural,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_TIMEOUT_SECONDS,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, WATCH_TIMEOUT_SECONDS + 10),
            ),
        )
        with self._lock:
            self._streams.add(response)
        if stop is not None and stop.is_set():
            # Stopped while this watch was being opened, after cut_watches() looked: end it here.
            response.shutdown()
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = _watch_event(line)
                    if event is None:
                        # A broken stream: end this watch, and list again, rather than miss what it garbled.
                        raise ClusterError(
                            f"the watch of {api.qualified} on {self.server} sent something that is not a watch event: "
                            f"{line[:80]!r}"
                        )
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise WatchExpired(f"{api.qualified}: {status.get('message', 'resource version too old')}")
                        raise self._translate_status(status, "watch", api.qualified)
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(f"the watch of {api.qualified} on {self.server} was cut: {exc}") from exc
        finally:
            with self._lock:
                self._streams.discard(response)
            response.release_conn()

    def cut_watches(self) -> None:
        """End every open request now: the watches (Watch.stop() would wait for the next event), and any list or
        discovery waiting on a server that accepted the connection and never answers, which would otherwise
        hold a stop (and a CLI's --timeout) for the whole read timeout."""
        with self._lock:
            streams = list(self._streams)
        for response in streams:
            try:
                response.shutdown()
            except (OSError, AttributeError):
                response.close()
        for connection in list(self._connections):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def events(self, ref: ObjectRef, *, limit: int = 20) -> list[FluxEvent]:
        """The object's recent core/v1 Events, newest first."""
        selector = f"involvedObject.kind={ref.kind},involvedObject.name={ref.name}"
        response = self._call(
            f"list events of {ref}",
            "list",
            "events",
            lambda: self._get(
                "/api/v1/namespaces/{namespace}/events", {"namespace": ref.namespace}, [("fieldSelector", selector)]
            ),
        )
        items = json.loads(response).get("items") or []
        events = [
            FluxEvent(
                type=str(item.get("type", "")),
                reason=str(item.get("reason", "")),
                message=str(item.get("message", "")),
                revision=next(
                    (
                        v
                        for k, v in ((item.get("metadata") or {}).get("annotations") or {}).items()
                        if k.endswith("/revision")
                    ),
                    "",
                ),
                timestamp=str(item.get("lastTimestamp") or item.get("eventTime") or item.get("firstTimestamp") or ""),
                count=int(item.get("count") or 1),
            )
            for item in items
        ]
        return sorted(events, key=lambda event: event.timestamp, reverse=True)[:limit]

    # --- writing -----------------------------------------------------------------------------------------------

    def request_reconcile(self, api: KindApi, ref: ObjectRef, token: str) -> None:
        """What `flux reconcile` does: merge-patch reconcile.fluxcd.io/requestedAt with a new token."""
        patch = {"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}}
        self._call(
            f"annotate {ref}",
            "patch",
            api.qualified,
            lambda: self._custom.patch_namespaced_custom_object(
                api.group,
                api.version,
                ref.namespace,
                api.plural,
                ref.name,
                patch,
                _request_timeout=REQUEST_TIMEOUTS,
            ),
        )

    def _get(self, path: str, path_params: dict[str, str], query: list[tuple[str, str]]) -> bytes:
        """A GET through the client's own request builder, auth and pool. Events are listed this way rather than
        through `CoreV1Api`, whose import builds the validators of the whole core API: 22 MiB of the tray's memory
        for one call."""
        request = self._api.param_serialize(
            method="GET",
            resource_path=path,
            path_params=path_params,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response: Any = self._api.call_api(*request, _request_timeout=REQUEST_TIMEOUTS)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return bytes(response.data)

    # --- error translation -------------------------------------------------------------------------------------

    def _call(self, action: str, verb: str, resource: str, call: Any) -> Any:
        with self._lock:
            self.requests += 1
        try:
            return call()
        except ApiException as exc:
            raise self._translate_api_exception(exc, action, verb, resource) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(
                f"cannot reach the API server of context {self.context!r} at {self.server}: {_reason(exc)}"
            ) from exc

    def _translate_api_exception(self, exc: ApiException, action: str, verb: str, resource: str) -> ClusterError:
        status: dict[str, Any] = {}
        try:
            status = json.loads(exc.body) if exc.body else {}
        except (ValueError, TypeError):
            status = {}
        status.setdefault("code", exc.status)
        status.setdefault("message", exc.reason or "")
        return self._translate_status(status, verb, resource, action=action)

    def _translate_status(
        self, status: Mapping[str, Any], verb: str, resource: str, *, action: str = ""
    ) -> ClusterError:
        code = status.get("code")
        message = str(status.get("message", ""))
        if code == 401:
            return Unauthorized(
                f"the API server at {self.server} rejected the credentials of context {self.context!r} (401): "
                f"the token may have expired; log in again and retry"
            )
        if code == 403:
            verbs = "get, list and watch" if verb in ("list", "watch", "get") else verb
            return Forbidden(
                f"context {self.context!r} may not {verb} {resource}: fluxmon needs {verbs} on {resource} "
                f"(cluster-wide){' and patch to trigger reconciles' if verb == 'patch' else ''}. "
                f"The README lists the minimal ClusterRole. Server said: {message}"
            )
        if code == 404:
            return KindMissing(
                f"{resource} is not served by the API server at {self.server} ({message or 'not found'})"
            )
        if code == 410:
            return WatchExpired(f"{resource}: {message}")
        return ClusterError(f"{action or verb} failed on {self.server}: {code} {message}".strip())


def _tracking_pools(connections: weakref.WeakSet[Any]) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes that note every connection they open in `connections`, so that cut_watches() can
    shut their sockets: urllib3 itself offers no way to abort a request in flight from another thread."""

    class TrackingHTTPPool(HTTPConnectionPool):
        def _new_conn(self) -> Any:
            connection = super()._new_conn()
            connections.add(connection)
            return connection

    class TrackingHTTPSPool(HTTPSConnectionPool):
        def _new_conn(self) -> Any:
            connection = super()._new_conn()
            connections.add(connection)
            return connection

    return {"http": TrackingHTTPPool, "https": TrackingHTTPSPool}


def _watch_event(line: bytes) -> dict[str, Any] | None:
    """One line of a watch stream as an event (`{"type": ..., "object": {...}}`), or None if it is not one."""
    try:
        event = json.loads(line)
    except ValueError:  # UnicodeDecodeError is one too
        return None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        return None
    return event


def _reason(exc: BaseException) -> str:
    """The innermost reason of a urllib3 error (`Connection refused`), without its long wrapping."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.rpartition(": ")[2] if "Errno" in text else text
