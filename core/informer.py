"""One shared list+watch per Flux kind: the informer cache that every session reads.

Polling each object costs N requests every interval and adds latency; a watch costs one long request per kind,
whatever the number of objects and sessions, and reports a change within milliseconds.

Per kind, a named thread lists, then watches from the list's resourceVersion (with bookmarks), and on a watch
that ends resumes from the last version seen. 410 Gone lists again at once. Any other error backs off with
jitter (retry_delay, a pure policy) and is reported as that kind's state; a kind that is missing or forbidden
degrades that kind only.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fluxmon.core.cluster import (
    ClusterApi,
    ClusterError,
    ClusterUnreachable,
    FluxNotInstalled,
    Forbidden,
    KindApi,
    KindMissing,
    Unauthorized,
    WatchExpired,
)
from fluxmon.core.errors import FluxmonError
from fluxmon.core.objects import FluxObject, ObjectRef, parse_flux_object
from fluxmon.core.text import display_line

log = logging.getLogger("fluxmon.informer")

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RECONNECT_MAX_SECONDS = 2.0
"""An API server that cannot be reached is tried at least this often: a refused connection costs nothing, and the
tray must stop saying "cannot reach" within seconds of its return (a 30 s backoff kept it wrong while a push
deployed). Other errors, from a server that answers, back off to BACKOFF_MAX_SECONDS."""
SLOW_RETRY_SECONDS = 30.0
"""A missing or forbidden kind is asked about again this often: someone may install it or grant access."""
STOP_TIMEOUT_SECONDS = 5.0
WATCH_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
"""What a watch stream carries (ERROR is turned into an exception by the adapter); anything else is skipped."""
PROBLEMS_SHOWN = 3
"""A malformed object's log line names this many of its bad fields."""


class KindStatus(StrEnum):
    SYNCING = "syncing"
    SYNCED = "synced"
    MISSING = "missing"
    FORBIDDEN = "forbidden"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, kw_only=True, slots=True)
class KindState:
    """How well the cache knows one kind, and why not, in a sentence for the user."""

    kind: str
    status: KindStatus
    message: str = ""
    failures: int = 0
    """Failed tries in a row: a CLI gives up on a cluster it never reached after a few."""


def retry_delay(error: FluxmonError, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """How long to wait before trying again after `error` (the `attempt`-th failure in a row).

    Trouble backs off exponentially with jitter, so that many clients do not retry in step, up to
    RECONNECT_MAX_SECONDS while the server cannot be reached at all, and BACKOFF_MAX_SECONDS when it answers with
    errors; a missing or forbidden kind will not change soon, so it is asked about slowly.
    """
    if isinstance(error, WatchExpired):
        return 0.0
    if isinstance(error, (KindMissing, FluxNotInstalled, Forbidden, Unauthorized)):
        return SLOW_RETRY_SECONDS
    limit = RECONNECT_MAX_SECONDS if isinstance(error, ClusterUnreachable) else BACKOFF_MAX_SECONDS
    ceiling = min(limit, BACKOFF_BASE_SECONDS * float(2 ** max(attempt - 1, 0)))
    return ceiling / 2 + rand() * ceiling / 2


def state_for(kind: str, error: FluxmonError, *, failures: int = 0) -> KindState:
    statuses: dict[type[FluxmonError], KindStatus] = {
        KindMissing: KindStatus.MISSING,
        FluxNotInstalled: KindStatus.MISSING,
        Forbidden: KindStatus.FORBIDDEN,
        Unauthorized: KindStatus.UNAUTHORIZED,
    }
    status = statuses.get(type(error), KindStatus.UNREACHABLE)
    return KindState(kind=kind, status=status, message=error.message, failures=failures)


class ClusterCache:
    """The informer cache. `start()` spawns one thread per kind; `stop()` cuts the watches and joins them."""

    def __init__(
        self,
        cluster: ClusterApi,
        kinds: tuple[str, ...],
        *,
        on_change: Callable[[], None] = lambda: None,
        retry: Callable[[FluxmonError, int], float] = retry_delay,
    ) -> None:
        """`retry`: the backoff policy, (error, attempt) -> seconds (tests give one that records and waits not)."""
        self.cluster = cluster
        self._retry = retry
        self.kinds = kinds
        self._on_change = on_change
        self._objects: dict[str, dict[ObjectRef, FluxObject]] = {kind: {} for kind in kinds}
        self._states: dict[str, KindState] = {kind: KindState(kind=kind, status=KindStatus.SYNCING) for kind in kinds}
        self._apis: dict[str, KindApi] = {}
        self._reported: dict[ObjectRef, tuple[str, ...]] = {}
        """The problems last reported per malformed object: each is said once, not at every status write."""
        self._structure = 0
        """Counts the changes that may change a plan: objects added or removed, specs, inventories."""
        self._changed: set[ObjectRef] = set()
        """The objects written since the last `take_changes()`: the sessions that read them are judged again."""
        self._lock = threading.RLock()
        """Re-entrant: `wait_until` calls its predicate holding it, and the predicate may be `settled` or `states`,
        which take it again (with a plain Lock that deadlocked)."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.changed = threading.Condition(self._lock)
        """Notified after every change; `wait_until` waits on it."""

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for kind in self.kinds:
            thread = threading.Thread(
                target=self._run, args=(kind, self._stop), name=f"fluxmon-watch-{kind.lower()}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.cluster.cut_watches()
        with self._lock:
            self.changed.notify_all()
        for thread in self._threads:
            thread.join(STOP_TIMEOUT_SECONDS)
        self._threads.clear()

    # --- reading -------------------------------------------------------------------------------------------------

    def objects(self) -> dict[ObjectRef, FluxObject]:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[dict[ObjectRef, FluxObject], int]:
        """Every object, and the structure version they are at, read together (a plan cached under a version
        must have been made from objects at least that new)."""
        with self._lock:
            objects = {ref: obj for by_ref in self._objects.values() for ref, obj in by_ref.items()}
            return objects, self._structure

    def states(self) -> dict[str, KindState]:
        with self._lock:
            return dict(self._states)

    def take_changes(self) -> tuple[set[ObjectRef], int, dict[str, KindState]]:
        """The objects written since the last call, the structure version and every kind's state, read together.

        The session manager alone calls it, once a pass: a status write then costs the sessions that read that
        object, not every session and not a copy of every object.
        """
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed, self._structure, dict(self._states)

    def pick(self, refs: Iterable[ObjectRef]) -> tuple[dict[ObjectRef, FluxObject], int]:
        """The cached objects among `refs` and the structure version, read together: what sessions read, without
        copying the rest (a plan made at another version may name objects that are gone)."""
        with self._lock:
            picked = {}
            for ref in refs:
                obj = self._objects.get(ref.kind, {}).get(ref)
                if obj is not None:
                    picked[ref] = obj
            return picked, self._structure

    def api_for(self, kind: str) -> KindApi | None:
        with self._lock:
            return self._apis.get(kind)

    def settled(self) -> bool:
        """Whether every kind is known: synced, or definitely missing or forbidden."""
        with self._lock:
            return all(state.status is not KindStatus.SYNCING for state in self._states.values())

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (on changes, with a timeout) until `predicate()` holds."""
        with self._lock:
            return self.changed.wait_for(predicate, timeout)

    # --- the per-kind loop ---------------------------------------------------------------------------------------

    def _run(self, kind: str, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                api = self._resolve(kind)
                resource_version = self._list(kind, api)
                attempt = 0
                while not stop.is_set():
                    # A watch ends when the server's timeoutSeconds runs out: resume from the last version seen.
                    resource_version = self._watch(kind, api, resource_version, stop)
            except WatchExpired:
                log.info("%s: watch expired (410); listing again", kind)
                continue  # the history is gone: list again, at once
            except ClusterError as error:
                if stop.is_set():
                    return
                attempt += 1
                changed = self._set_state(state_for(kind, error, failures=attempt))
                delay = self._retry(error, attempt)
                # Said once per change: an unreachable server is tried every few seconds, maybe for hours.
                log.log(
                    logging.INFO if changed else logging.DEBUG, "%s: %s; retrying in %.1fs", kind, error.message, delay
                )
                stop.wait(delay)
            except Exception:
                # One error boundary per loop: a bug here must not kill the watch for good.
                log.exception("%s: unexpected error in the watch loop", kind)
                stop.wait(BACKOFF_MAX_SECONDS)

    def _resolve(self, kind: str) -> KindApi:
        with self._lock:
            api = self._apis.get(kind)
        if api is not None:
            return api
        found = self.cluster.discover((kind,))
        if kind not in found:
            raise KindMissing(
                f"{kind} is not served in context {self.cluster.context!r}: its Flux controller is not installed"
            )
        with self._lock:
            self._apis[kind] = found[kind]
        return found[kind]

    def _list(self, kind: str, api: KindApi) -> str:
        resource_version, items = self.cluster.list_kind(api)
        parsed = {}
        for body in items:
            obj = self._parse(kind, body)
            if obj is not None:
                parsed[obj.ref] = obj
        with self._lock:
            self._changed.update(self._objects[kind], parsed)
            self._objects[kind] = parsed
            self._structure += 1  # a fresh list may differ in anything
            self._states[kind] = KindState(kind=kind, status=KindStatus.SYNCED)
            self.changed.notify_all()
        self._on_change()
        return resource_version

    def _watch(self, kind: str, api: KindApi, resource_version: str, stop: threading.Event) -> str:
        for event in self.cluster.watch(api, resource_version, stop=stop):
            kind_of_event = event.get("type")
            if kind_of_event not in WATCH_EVENT_TYPES:
                # Not an event we know (a newer server's): neither its object nor its version is taken as a change.
                log.debug("%s: skipped a watch event of unknown type %r", kind, display_line(str(kind_of_event)))
                continue
            body = event.get("object") or {}
            resource_version = str((body.get("metadata") or {}).get("resourceVersion") or resource_version)
            if kind_of_event == "BOOKMARK":
                continue  # only a newer version to resume from: nothing changed
            obj = self._parse(kind, body)
            if obj is None:
                continue
            with self._lock:
                old = self._objects[kind].get(obj.ref)
                if kind_of_event == "DELETED":
                    self._objects[kind].pop(obj.ref, None)
                else:
                    self._objects[kind][obj.ref] = obj
                if old is None or kind_of_event == "DELETED" or old.structure != obj.structure:
                    self._structure += 1
                self._changed.add(obj.ref)
                if self._states[kind].status is not KindStatus.SYNCED:
                    self._states[kind] = KindState(kind=kind, status=KindStatus.SYNCED)
                self.changed.notify_all()
            self._on_change()
        return resource_version

    def _parse(self, kind: str, body: dict[str, Any]) -> FluxObject | None:
        """One object behind its own boundary: a malformed one is reported once, as itself, and never stops the
        kind's watch or anyone's session. What can be read of it is kept; what cannot is read as empty."""
        try:
            obj = parse_flux_object(body)
        except ValueError as error:
            log.warning("%s: ignored an object that cannot be read: %s", kind, display_line(str(error)))
            return None
        if obj.problems and self._reported.get(obj.ref) != obj.problems:
            shown = "; ".join(obj.problems[:PROBLEMS_SHOWN])
            more = f" (and {len(obj.problems) - PROBLEMS_SHOWN} more)" if len(obj.problems) > PROBLEMS_SHOWN else ""
            log.warning("%s is malformed, read as empty where it is: %s%s", obj.ref, display_line(shown), more)
        if obj.problems:
            self._reported[obj.ref] = obj.problems
        else:
            self._reported.pop(obj.ref, None)
        return obj

    def _set_state(self, state: KindState) -> bool:
        """Record a kind's state; whether it changed."""
        with self._lock:
            if self._states.get(state.kind) == state:
                return False
            self._states[state.kind] = state
            self.changed.notify_all()
        self._on_change()
        return True
