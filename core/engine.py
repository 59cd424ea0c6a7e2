"""The engine: the one place that builds the cluster connection, the informer cache, the session manager, the store
and the spool reader, and starts and stops them in one order. Every front end (`wait`, `watch`, the demo, the tray)
is a thin layer over it, so that they cannot drift apart (they did: the demo once followed four kinds, the tray five).

    start   connect (load the kubeconfig; no request yet) -> sessions and their informer -> spool reader
    stop    spool reader (files not taken stay for later) -> sessions and their informer -> the connection

Sessions wait in the spool until the engine can follow them: nothing is claimed before the sessions run. A start
that cannot connect raises (a FluxmonError that says why) and leaves the engine stopped, to be started again.
The store and the spool are per user, so their locks are taken (`take_locks`) before anything shows on screen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from fluxmon.core.cluster import ClusterApi
from fluxmon.core.config import DEFAULT_MONITOR_TYPES, DEFAULT_TIMEOUT_SECONDS
from fluxmon.core.health import ClusterHealth
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import HealthSubscriber, SessionManager, Subscriber
from fluxmon.core.objects import ObjectRef
from fluxmon.core.session import SessionSnapshot, SessionSpec, spec_from_request
from fluxmon.core.spool import SessionRequest, SpoolReader
from fluxmon.core.store import SessionStore

log = logging.getLogger("fluxmon.engine")

Connect = Callable[[str | None, str | None], ClusterApi]
"""(kubeconfig, context) -> a cluster; core.kube's by default, a scripted one in tests."""


def _connect_kube(kubeconfig: str | None, context: str | None) -> ClusterApi:
    return Cluster.connect(kubeconfig=kubeconfig, context=context)


class Engine:
    """Build it with where things are, `subscribe`, `start()`; `stop()` (it can be started again); `close()`."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        kinds: tuple[str, ...] = DEFAULT_MONITOR_TYPES,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        state_dir: Path | None = None,
        spool_dir: Path | None = None,
        on_spooled: Callable[[SessionRequest], None] | None = None,
        connect: Connect = _connect_kube,
    ) -> None:
        """`state_dir`: the history and active sessions (None: nothing kept). `spool_dir`: the pushes the hooks
        capture (None: only sessions added with `add`). `on_spooled`: told of each captured push, for narration."""
        self.kubeconfig = kubeconfig
        self.context = context
        self.kinds = kinds
        self.default_timeout = default_timeout
        self.store = SessionStore(state_dir) if state_dir is not None else None
        self.spool_dir = spool_dir
        self._on_spooled = on_spooled
        self._connect = connect
        self._subscribers: list[Subscriber] = []
        self._health_subscribers: list[HealthSubscriber] = []
        self._lock = threading.Lock()
        self.cluster: ClusterApi | None = None
        self._manager: SessionManager | None = None
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
        return self._manager is not None

    def start(self) -> None:
        """Connect, then start the sessions, then the spool reader; raises a FluxmonError if it cannot connect."""
        if self.running:
            return
        cluster = self._connect(self.kubeconfig, self.context)
        manager = SessionManager(cluster, kinds=self.kinds, store=self.store)
        for subscriber in self._subscribers:
            manager.subscribe(subscriber)
        for health_subscriber in self._health_subscribers:
            manager.subscribe_health(health_subscriber)
        with self._lock:
            self.cluster, self._manager = cluster, manager
        manager.start()
        if self._reader is None:
            self._reader = self._new_reader()
        if self._reader is not None:
            self._reader.start()

    def stop(self) -> None:
        """Producers first: the spool reader, then the sessions (and their informer), then the connection. Active
        sessions stay in the store, to be resumed by the next start."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
        with self._lock:
            manager, cluster = self._manager, self.cluster
            self._manager, self.cluster = None, None
        if manager is not None:
            manager.stop()
        if cluster is not None:
            cluster.close()

    def _new_reader(self) -> SpoolReader | None:
        if self.spool_dir is None:
            return None
        return SpoolReader(self.spool_dir, on_session=self._spooled, on_rejected=self._rejected)

    # --- the API the front ends use ------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Every session snapshot that changed, on the engine's worker thread: enqueue only. Before `start()`."""
        self._subscribers.append(subscriber)

    def subscribe_health(self, subscriber: HealthSubscriber) -> None:
        """The cluster's health whenever it changes (also with no session open), like `subscribe`."""
        self._health_subscribers.append(subscriber)

    def add(self, spec: SessionSpec) -> bool:
        """Follow a push; False (and nothing followed) while the engine is stopped."""
        manager = self._manager
        if manager is None:
            return False
        manager.add(spec)
        return True

    def health(self) -> ClusterHealth:
        """The cluster's health as last decided (the default, unknown, while stopped)."""
        manager = self._manager
        return manager.health() if manager is not None else ClusterHealth()

    def wait_final(self, session_id: str, timeout: float) -> SessionSnapshot | None:
        manager = self._manager
        return manager.wait_final(session_id, timeout) if manager is not None else None

    def unfollowed(self, snapshots: Iterable[SessionSnapshot]) -> set[str] | None:
        """Ids of the sessions whose remote and branch no Flux source follows any more (None: not known now)."""
        manager = self._manager
        return manager.unfollowed(snapshots) if manager is not None else None

    def reconcile_now(self, refs: list[ObjectRef]) -> list[str]:
        """`flux reconcile --with-source` on demand; makes requests, so call it off the UI thread."""
        manager = self._manager
        return manager.reconcile_now(refs) if manager is not None else []

    # --- the spool reader's callbacks (its thread) ---------------------------------------------------------------

    def _spooled(self, request: SessionRequest) -> None:
        if self._on_spooled is not None:
            self._on_spooled(request)
        self.add(spec_from_request(request, default_timeout=self.default_timeout))

    def _rejected(self, name: str, reason: str) -> None:
        where = self.spool_dir / "rejected" if self.spool_dir is not None else ""
        log.warning("ignored spool file %s (kept in %s): %s", name, where, reason)
