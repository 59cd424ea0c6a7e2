"""A list+watch cache of one resource, as the controllers' informers keep one (client-go's reflector, small)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fluxmon.sim.client import ApiStatusError, KubeClient, Resource

log = logging.getLogger("fluxmon.sim")

WATCH_TIMEOUT_SECONDS = 300
RETRY_SECONDS = 0.5


class Informer:
    """Keeps `cache` equal to the server's objects of one resource; calls `on_change` after every change."""

    def __init__(self, client: KubeClient, resource: Resource, *, on_change: Callable[[], None]) -> None:
        self.client = client
        self.resource = resource
        self.on_change = on_change
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.cache.values())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.cache.get((namespace, name))

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(stop,), name=f"sim-informer-{self.resource.plural}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                resource_version = self._list()
                # Watch from the list's version; a watch that ends (timeout, cut) resumes from the last event seen.
                while not stop.is_set():
                    resource_version = self._watch(resource_version, stop)
            except _Expired:
                continue  # 410: the history is gone; list again
            except (ApiStatusError, OSError, ValueError) as error:
                log.warning("watch of %s failed (%s); retrying", self.resource.plural, error)
                stop.wait(RETRY_SECONDS)

    def _list(self) -> str:
        listing = self.client.list(self.resource)
        with self._lock:
            self.cache = {_key(obj): obj for obj in listing.get("items", [])}
        self.synced.set()
        self.on_change()
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str, stop: threading.Event) -> str:
        for event in self.client.watch(
            self.resource, resource_version=resource_version, timeout_seconds=WATCH_TIMEOUT_SECONDS, stop=stop
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired
                raise ApiStatusError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""))
            resource_version = str(obj.get("metadata", {}).get("resourceVersion", resource_version))
            if kind == "BOOKMARK":
                continue
            with self._lock:
                if kind == "DELETED":
                    self.cache.pop(_key(obj), None)
                else:
                    self.cache[_key(obj)] = obj
            self.on_change()
        return resource_version


class _Expired(Exception):
    """The watch got 410 Gone: its resourceVersion is too old, so the cache must list again."""


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata", {})
    return (metadata.get("namespace", ""), metadata["name"])
