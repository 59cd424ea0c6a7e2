"""A small Kubernetes REST client for the simulated controllers (the simulator's own client-go).

The controllers are clients of an API server, as the real ones are, so that they run unchanged against the
simulated server or a real kube-apiserver. The product's monitor uses the official `kubernetes` package instead;
keeping this one to the stdlib keeps the simulator independent of what it is used to test.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 30.0


class ApiStatusError(Exception):
    """A failed request, with the API's metav1.Status reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True, slots=True)
class Resource:
    """Where a kind is served: group, version, plural, and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


class KubeClient:
    """One API server, with a bearer token and a CA; a fresh connection per request (loopback makes it cheap)."""

    def __init__(self, server: str, *, token: str = "", ca_data: bytes = b"") -> None:
        parts = urlsplit(server)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._token = token
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context()
            if ca_data:
                self._ssl.load_verify_locations(cadata=ca_data.decode())
        self._discovery: dict[tuple[str, str], Resource] = {}
        self._discovery_lock = threading.Lock()
        self._watches: set[Any] = set()
        """The sockets of open watches."""
        self._watches_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: Path, *, context: str = "") -> KubeClient:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        name = context or config.get("current-context", "")
        ctx = next(c["context"] for c in config.get("contexts", []) if c["name"] == name)
        cluster = next(c["cluster"] for c in config.get("clusters", []) if c["name"] == ctx["cluster"])
        user: dict[str, Any] = (
            next((u["user"] for u in config.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
        )
        ca = b""
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca = Path(cluster["certificate-authority"]).read_bytes()
        return cls(cluster["server"], token=user.get("token", ""), ca_data=ca)

    # --- raw requests --------------------------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, content_type: str = "", accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """Send one request and return the decoded JSON; raises ApiStatusError for any non-2xx answer."""
        url = path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        connection = self._connection(REQUEST_TIMEOUT_SECONDS)
        try:
            connection.request(method, url, body=data, headers=self._headers(content_type if data else "", accept))
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(payload) if payload else None
        except ValueError:
            decoded = None  # a plain-text error page ("404 page not found" while a CRD is being established)
        if response.status >= 300:
            if isinstance(decoded, Mapping) and decoded.get("kind") == "Status":
                raise ApiStatusError(response.status, decoded.get("reason", ""), decoded.get("message", ""))
            raise ApiStatusError(response.status, response.reason, payload.decode(errors="replace")[:200])
        return decoded

    # --- discovery -----------------------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        """Where `kind` of `api_version` is served; asks discovery again when it is not known (a new CRD)."""
        group, _, version = api_version.rpartition("/")
        with self._discovery_lock:
            found = self._discovery.get((api_version, kind))
            if found is None:
                base = f"/apis/{group}/{version}" if group else f"/api/{version}"
                try:
                    listing = self.request("GET", base)
                except ApiStatusError as error:
                    raise ApiStatusError(404, "NotFound", f"no matches for kind {kind!r} in {api_version}") from error
                for entry in listing.get("resources", []):
                    if "/" not in entry["name"]:
                        self._discovery[(api_version, entry["kind"])] = Resource(
                            group=group,
                            version=version,
                            plural=entry["name"],
                            kind=entry["kind"],
                            namespaced=entry["namespaced"],
                        )
                found = self._discovery.get((api_version, kind))
            if found is None:
                raise ApiStatusError(404, "NotFound", f"no matches for kind {kind!r} in version {api_version!r}")
            return found

    # --- verbs ---------------------------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", resource.path(namespace, name))
        return result

    def list(self, resource: Resource, namespace: str = "", **query: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", resource.path(namespace), query=query)
        return result

    def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", resource.path(namespace), body=body)
        return result

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Any,
        *,
        subresource: str = "",
        content_type: str = MERGE_PATCH,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", resource.path(namespace, name, subresource), body=patch, content_type=content_type
        )
        return result

    def patch_status(self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self.patch(resource, namespace, name, {"status": status}, subresource="status")

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        self.request("DELETE", resource.path(namespace, name))

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        timeout_seconds: int = 60,
        namespace: str = "",
        stop: threading.Event | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream watch events until the server ends the watch; the caller handles ERROR (410) events."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        connection = self._connection(timeout_seconds + 10.0)
        try:
            connection.connect()
        except OSError:
            return  # the server is away: the caller lists and watches again
        sock = connection.sock  # kept: http.client may drop connection.sock once the response owns it
        with self._watches_lock:
            self._watches.add(sock)
        try:
            if stop is not None and stop.is_set():
                return  # stopped while this watch was being opened, after close_watches() looked
            connection.request("GET", resource.path(namespace) + "?" + urlencode(query), headers=self._headers())
            response = connection.getresponse()
            if response.status >= 300:
                payload = json.loads(response.read() or b"{}")
                raise ApiStatusError(response.status, payload.get("reason", ""), payload.get("message", ""))
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException):
            # Cut by close_watches(), or the server went away (mid-chunk: IncompleteRead): the caller lists and
            # watches again.
            return
        finally:
            with self._watches_lock:
                self._watches.discard(sock)
            connection.close()

    def close_watches(self) -> None:
        """Cut every open watch at once, so that a stopping controller does not wait for a server timeout."""
        with self._watches_lock:
            for sock in self._watches:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
