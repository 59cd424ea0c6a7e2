"""The engine: the one place that builds the cluster connections, their informer caches and session managers, the
store and the spool reader, and starts and stops them in one order. Every front end (`wait`, `watch`, the demo, the
tray) is a thin layer over it, so that they cannot drift apart (they did: the demo once followed four kinds, the
tray five).

A push is followed on every configured cluster: one `ClusterEngine` per kubeconfig context (its connection and its
session manager), composed here. Each judges the push on its own cluster; core.push decides the push's outcome
from them, and the engine publishes that (`PushSnapshot`) to the front ends and keeps it in the store.

    start   connect every cluster (load the kubeconfig; no request yet) -> their sessions -> resumed pushes
            -> spool reader
    stop    spool reader (files not taken stay for later) -> every cluster's sessions -> the connections

Sessions wait in the spool until the engine can follow them: nothing is claimed before the sessions run. A start
that cannot connect one of its clusters raises (a FluxmonError that says why) and leaves the engine stopped, to be
started again. The store and the spool are per user, so their locks are taken (`take_locks`) before anything shows
on screen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fluxmon.core.cluster import ClusterApi, ClusterTarget
from fluxmon.core.config import DEFAULT_MONITOR_TYPES, DEFAULT_TIMEOUT_SECONDS, Retention
from fluxmon.core.errors import FluxmonError
from fluxmon.core.health import ClusterHealth
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import HealthSubscriber, SessionManager
from fluxmon.core.objects import ObjectRef
from fluxmon.core.push import PushSnapshot, combine, pending
from fluxmon.core.session import SessionSnapshot, SessionSpec, spec_from_request
from fluxmon.core.spool import SessionRequest, SpoolReader
from fluxmon.core.store import SessionStore

log = logging.getLogger("fluxmon.engine")

Connect = Callable[[ClusterTarget], ClusterApi]
"""A target -> its cluster; core.kube's by default, a scripted one in tests."""
PushSubscriber = Callable[[PushSnapshot], None]
FINISHED_KEPT = 20
"""Settled pushes whose last snapshot the engine still answers for (`wait_final`); their outcomes are in the store."""


def _connect_kube(target: ClusterTarget) -> ClusterApi:
    return Cluster.connect(kubeconfig=target.kubeconfig, context=target.context)


class ClusterEngine:
    """One cluster: its connection and its session manager (with the manager's informer), started and stopped
    together. It judges each push on this cluster alone, and hands every snapshot to `on_snapshot`."""

    def __init__(
        self,
        cluster: ClusterApi,
        *,
        kinds: tuple[str, ...],
        on_snapshot: Callable[[SessionSnapshot], None],
        health_subscribers: Iterable[HealthSubscriber],
    ) -> None:
        self.cluster = cluster
        self.manager = SessionManager(cluster, kinds=kinds)
        self.manager.subscribe(on_snapshot)
        for subscriber in health_subscribers:
            self.manager.subscribe_health(subscriber)

    @property
    def context(self) -> str:
        return self.cluster.context

    def start(self) -> None:
        self.manager.start()

    def stop(self) -> None:
        """The sessions (and their informer) first, then the connection."""
        self.manager.stop()
        self.cluster.close()


class _Push:
    """One push's bookkeeping: its spec, its latest session on each cluster, and what was last published."""

    def __init__(self, spec: SessionSpec, contexts: Sequence[str]) -> None:
        self.spec = spec
        self.sessions = {context: pending(spec, context) for context in contexts}
        self.published: PushSnapshot | None = None
        self.failed_on = ""
        """The cluster the push was first said to fail on: it stays the one named, whatever fails next."""


class Engine:
    """Build it with where things are, `subscribe`, `start()`; `stop()` (it can be started again); `close()`."""

    def __init__(
        self,
        *,
        targets: Sequence[ClusterTarget] = (),
        kubeconfig: str | None = None,
        context: str | None = None,
        kinds: tuple[str, ...] = DEFAULT_MONITOR_TYPES,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        state_dir: Path | None = None,
        retention: Retention | None = None,
        spool_dir: Path | None = None,
        on_spooled: Callable[[SessionRequest], None] | None = None,
        connect: Connect = _connect_kube,
        require_all: bool = True,
    ) -> None:
        """`targets`: the clusters to follow each push on (none given: `context` in `kubeconfig`, one cluster).
        `require_all`: a target that cannot be connected fails the start (`wait`: the user named it); else it is
        left out and said in `unconnected` (the tray: one bad context in the config must not stop the others).
        `state_dir`: the history and active pushes (None: nothing kept); `retention`: how much history it keeps
        (config `history_limit`, `history_max_age`). `spool_dir`: the pushes the hooks capture
        (None: only pushes added with `add`). `on_spooled`: told of each captured push, for narration."""
        self.targets = tuple(targets) or (ClusterTarget(context=context, kubeconfig=kubeconfig),)
        self.kinds = kinds
        self.default_timeout = default_timeout
        self.store = SessionStore(state_dir, retention=retention) if state_dir is not None else None
        self.spool_dir = spool_dir
        self._on_spooled = on_spooled
        self._connect = connect
        self.require_all = require_all
        self.unconnected: tuple[str, ...] = ()
        """One line per target left out at the last start, saying why (only without `require_all`)."""
        self._subscribers: list[PushSubscriber] = []
        self._health_subscribers: list[HealthSubscriber] = []
        self._lock = threading.RLock()
        """Guards the clusters and the pushes; never held during I/O."""
        self._publishing = threading.Lock()
        """Held by the cluster worker that is publishing a push, so that subscribers see each push in order."""
        self._ended = threading.Condition(self._lock)
        self.clusters: tuple[ClusterEngine, ...] = ()
        self._pushes: dict[str, _Push] = {}
        self._finished: dict[str, PushSnapshot] = {}
        self._reader: SpoolReader | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def take_locks(self) -> None:
        """One engine per user: the store's lock (per user whatever the environment), then the spool's. Raises a
        FluxmonError naming the holder; nothing is held after a failure."""
        if self.store is not None:
            self.store.take_lock()
        try:
            self._reader = self._new_reader()
            if self._reader is not None:
                self._reader.take_lock()
        except BaseException:
            if self.store is not None:
                self.store.release_lock()
            raise

    def close(self) -> None:
        """Stop, and let go of the store's lock (the spool's goes with the reader)."""
        self.stop()
        if self.store is not None:
            self.store.release_lock()

    @property
    def running(self) -> bool:
        return bool(self.clusters)

    @property
    def contexts(self) -> tuple[str, ...]:
        """The contexts followed: as connected while running, else as configured ("" for the current one)."""
        with self._lock:
            if self.clusters:
                return tuple(cluster.context for cluster in self.clusters)
        return tuple(target.context or "" for target in self.targets)

    def start(self) -> None:
        """Connect every cluster, start their sessions, resume the pushes of the last run, then read the spool;
        raises a FluxmonError (naming the context) if a cluster cannot be connected."""
        if self.running:
            return
        connected: list[ClusterApi] = []
        failures: list[str] = []
        for target in self.targets:
            try:
                connected.append(self._connect(target))
            except FluxmonError as error:
                if self.require_all or (target is self.targets[-1] and not connected):
                    for api in connected:
                        api.close()
                    raise
                failures.append(f"{target.context or 'the current context'}: {error}")
                log.error("not following pushes on %s", failures[-1])
        self.unconnected = tuple(failures)
        clusters = tuple(
            ClusterEngine(
                api, kinds=self.kinds, on_snapshot=self._on_snapshot, health_subscribers=self._health_subscribers
            )
            for api in _distinct(connected)
        )
        with self._lock:
            self.clusters = clusters
        for each in clusters:
            each.start()
        if self.store is not None:
            for spec in self.store.load_active():
                self.add(spec, resumed=True)  # the timeout counts from the push, also across the restart
        if self._reader is None:
            self._reader = self._new_reader()
        if self._reader is not None:
            self._reader.start()

    def stop(self) -> None:
        """Producers first: the spool reader, then every cluster. Active pushes stay in the store, to be resumed by
        the next start."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
        with self._lock:
            clusters, self.clusters = self.clusters, ()
            self._pushes.clear()
        for cluster in clusters:
            cluster.stop()

    def _new_reader(self) -> SpoolReader | None:
        if self.spool_dir is None:
            return None
        return SpoolReader(self.spool_dir, on_session=self._spooled, on_rejected=self._rejected)

    # --- the API the front ends use ------------------------------------------------------------------------------

    def subscribe(self, subscriber: PushSubscriber) -> None:
        """Every push snapshot that changed, on a cluster's worker thread: enqueue only. Before `start()`."""
        self._subscribers.append(subscriber)

    def subscribe_health(self, subscriber: HealthSubscriber) -> None:
        """Each cluster's health whenever it changes (also with no push open; it names its context), like
        `subscribe`."""
        self._health_subscribers.append(subscriber)

    def add(self, spec: SessionSpec, *, resumed: bool = False) -> bool:
        """Follow a push on every cluster; False (and nothing followed) while the engine is stopped."""
        with self._lock:
            clusters = self.clusters
            if not clusters:
                return False
            self._pushes[spec.id] = _Push(spec, [cluster.context for cluster in clusters])
        if self.store is not None and not resumed:
            try:
                self.store.save_active(spec)
            except (FluxmonError, OSError) as error:
                log.error("could not keep push %s in %s: %s", spec.id, self.store.directory, error)
        for cluster in clusters:
            cluster.manager.add(spec)
        return True

    def health(self) -> tuple[ClusterHealth, ...]:
        """Each cluster's health as last decided (none while stopped)."""
        with self._lock:
            clusters = self.clusters
        return tuple(cluster.manager.health() for cluster in clusters)

    def wait_final(self, push_id: str, timeout: float) -> PushSnapshot | None:
        """Block until the push has an outcome (or `timeout` passes); returns its last snapshot."""

        def latest() -> PushSnapshot | None:
            push = self._pushes.get(push_id)
            return push.published if push is not None else self._finished.get(push_id)

        with self._ended:
            self._ended.wait_for(lambda: (s := latest()) is not None and s.state.final, timeout)
            return latest()

    def unfollowed(self, pushes: Iterable[PushSnapshot]) -> set[str] | None:
        """Ids of the pushes whose remote and branch no Flux source on any cluster follows any more (None: not known
        now, on some cluster)."""
        with self._lock:
            clusters = self.clusters
        firsts = [push.first for push in pushes]
        gone: set[str] | None = {snapshot.id for snapshot in firsts}
        for cluster in clusters:
            there = cluster.manager.unfollowed(firsts)
            if there is None or gone is None:
                return None
            gone &= there
        return gone if clusters else None

    def reconcile_now(self, context: str, refs: list[ObjectRef]) -> list[str]:
        """`flux reconcile --with-source` on demand, on one cluster; makes requests, so call it off the UI thread."""
        with self._lock:
            cluster = next((c for c in self.clusters if c.context == context), None)
        return cluster.manager.reconcile_now(refs) if cluster is not None else []

    # --- the clusters' callbacks (their worker threads) ----------------------------------------------------------

    def _on_snapshot(self, snapshot: SessionSnapshot) -> None:
        """A cluster judged a push anew: decide the push's outcome, publish it if it changed, keep it once settled.

        One cluster's worker publishes at a time (`_publishing`), so that subscribers see each push in order; the
        store's I/O is done outside `_lock`, so that a slow disk or a history lock held by `wait` never stalls the
        UI thread's calls (contexts, health, unfollowed)."""
        with self._publishing:
            with self._lock:
                push = self._pushes.get(snapshot.id)
                if push is None or snapshot.context not in push.sessions:
                    return  # stopped meanwhile, or a push this engine no longer follows
                push.sessions[snapshot.context] = snapshot
                combined = combine(list(push.sessions.values()), failed_on=push.failed_on)
                if combined == push.published:
                    return
                decided = combined.state.final and (push.published is None or not push.published.state.final)
                push.failed_on = combined.failed_on  # the first cluster named stays named
                push.published = combined
                if combined.settled:
                    self._pushes.pop(combined.id, None)
                    self._finished[combined.id] = combined
                    while len(self._finished) > FINISHED_KEPT:
                        del self._finished[next(iter(self._finished))]
            if decided:
                self._untold(combined)  # before anyone can tell it (and mark it told)
            for subscriber in self._subscribers:
                try:
                    subscriber(combined)
                except Exception:
                    log.exception("a push subscriber failed")
            if combined.settled:
                self._record(combined)
            if combined.state.final:
                with self._ended:
                    self._ended.notify_all()

    def _untold(self, push: PushSnapshot) -> None:
        """The push has its outcome: mark it untold, so that a tray killed before telling it tells it at its next
        start. A store that fails must not hide the outcome from anyone."""
        if self.store is None:
            return
        try:
            self.store.untell(push.id)
        except (FluxmonError, OSError) as error:
            log.error("could not mark push %s untold in %s: %s", push.id, self.store.directory, error)

    def _record(self, push: PushSnapshot) -> None:
        """Keep a settled push in the history; a store that fails must not hide the outcome from anyone."""
        if self.store is None:
            return
        try:
            self.store.finish(push)
        except (FluxmonError, OSError) as error:
            log.error("could not record push %s in %s: %s", push.id, self.store.directory, error)

    # --- the spool reader's callbacks (its thread) ---------------------------------------------------------------

    def _spooled(self, request: SessionRequest) -> None:
        if self._on_spooled is not None:
            self._on_spooled(request)
        self.add(spec_from_request(request, default_timeout=self.default_timeout))

    def _rejected(self, name: str, reason: str) -> None:
        where = self.spool_dir / "rejected" if self.spool_dir is not None else ""
        log.warning("ignored spool file %s (kept in %s): %s", name, where, reason)


def _distinct(clusters: Sequence[ClusterApi]) -> list[ClusterApi]:
    """The clusters, each context once (two targets naming one context follow it once)."""
    seen: set[str] = set()
    kept = []
    for cluster in clusters:
        if cluster.context in seen:
            cluster.close()
            continue
        seen.add(cluster.context)
        kept.append(cluster)
    return kept
