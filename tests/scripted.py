"""A scripted cluster: the cluster port (core.cluster.ClusterApi) answering from a script, in the style of kopf's
tests/k8s streams (`STREAM_WITH_ERROR_410GONE` and the like), so that the informer's watch loop can be driven
through each of its branches without a server.

Per kind, the script is a queue of answers: each `list_kind` takes the next list (or error) and each `watch` the
next stream, a list of events that may end with an error (raised when the stream gets there, as the adapter
raises a 410 it reads). Once a kind's script is spent, its next call blocks like a quiet server until the
watches are cut (the informer's `stop()`), so the loop can never spin. Every call is recorded, in order, with the
resourceVersion it was made from.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fluxmon.core.cluster import PLURALS, FluxEvent, KindApi, WatchExpired
from fluxmon.core.objects import ObjectRef

Answer = tuple[str, list[dict[str, Any]]] | Exception
"""A list's answer: (resourceVersion, items), or the error the adapter would raise."""
Stream = list[dict[str, Any] | Exception]
"""A watch's answer: its events in order, and maybe an error where the stream breaks."""

GROUPS = {
    "GitRepository": "source.toolkit.fluxcd.io",
    "Kustomization": "kustomize.toolkit.fluxcd.io",
    "HelmRelease": "helm.toolkit.fluxcd.io",
}


def kind_api(kind: str) -> KindApi:
    return KindApi(kind=kind, group=GROUPS[kind], version="v1", plural=PLURALS[kind])


def event(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": body}


def bookmark(resource_version: str) -> dict[str, Any]:
    """What a server sends on a quiet watch: only a newer resourceVersion (kubernetes' watch bookmarks)."""
    return event("BOOKMARK", {"kind": "Kustomization", "metadata": {"resourceVersion": resource_version}})


STREAM_WITH_410_GONE: Stream = [WatchExpired("too old resource version: 1 (5)")]
"""The resourceVersion the watch was asked to start from is compacted away: list again."""


@dataclass
class Call:
    verb: str
    kind: str
    resource_version: str = ""


@dataclass
class ScriptedCluster:
    """Implements core.cluster.ClusterApi from a script."""

    lists: dict[str, deque[Answer]] = field(default_factory=dict)
    streams: dict[str, deque[Stream]] = field(default_factory=dict)
    context: str = "scripted"
    server: str = "https://scripted.invalid"
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cut = threading.Event()
        self._changed = threading.Condition()

    # --- the port ------------------------------------------------------------------------------------------------

    def discover(self, kinds: tuple[str, ...]) -> dict[str, KindApi]:
        return {kind: kind_api(kind) for kind in kinds if kind in self.lists}

    def list_kind(self, api: KindApi) -> tuple[str, list[dict[str, Any]]]:
        answer: Answer = self._next("list", api.kind, "", self.lists)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watch(
        self, api: KindApi, resource_version: str, *, stop: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]:
        stream = self._next("watch", api.kind, resource_version, self.streams)
        for item in stream:
            if isinstance(item, Exception):
                raise item
            yield item

    def cut_watches(self) -> None:
        self._cut.set()
        with self._changed:
            self._changed.notify_all()

    def events(self, ref: ObjectRef, *, limit: int = 20) -> list[FluxEvent]:
        return []

    def request_reconcile(self, api: KindApi, ref: ObjectRef, token: str) -> None:
        self.calls.append(Call("reconcile", api.kind))

    def close(self) -> None:
        self.cut_watches()

    # --- for the tests -------------------------------------------------------------------------------------------

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> list[Call]:
        """Block until `count` list/watch calls were made (or fail); returns them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"expected {count} calls, got {self.calls}")
            return list(self.calls[:count])

    def _next(self, verb: str, kind: str, resource_version: str, script: dict[str, deque[Any]]) -> Any:
        with self._changed:
            self.calls.append(Call(verb, kind, resource_version))
            self._changed.notify_all()
            queue = script.get(kind)
            if queue:
                return queue.popleft()
            # The script is spent: behave like a quiet server until the watches are cut.
            self._changed.wait_for(self._cut.is_set)
            return [] if verb == "watch" else ("0", [])
