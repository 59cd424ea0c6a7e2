"""The session manager: every active session, one shared cluster cache, one worker thread.

The worker wakes on every cache change and at the next deadline, never on a tick. It evaluates (a pure function)
only the sessions that can have changed: those that read an object written since the last pass, those whose
deadline came, new ones, and all of them when a plan may change (an object added or removed, a spec) or a kind's
state or the cluster's health did. A status write therefore costs the sessions that follow that object, whatever
the size of the cluster. Changed snapshots go to the subscribers. It also does the session's I/O: asking Flux to
reconcile now instead of at its next interval, and fetching the Events of an object that failed (those of the
revision it tried: an older failure's events are history). Subscribers are called on the worker thread and must
only enqueue (the UI drains its own queue). A session leaves the manager once its final snapshot is out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fluxmon.core.ancestry import GitAncestry
from fluxmon.core.cluster import ClusterApi, FluxEvent, Forbidden
from fluxmon.core.config import DEFAULT_MONITOR_TYPES
from fluxmon.core.errors import FluxmonError
from fluxmon.core.health import ClusterHealth, cluster_health
from fluxmon.core.informer import ClusterCache, KindState, KindStatus
from fluxmon.core.objects import FluxObject, ObjectRef
from fluxmon.core.plan import ObjectIndex, Push, source_follows
from fluxmon.core.revision import parse_revision
from fluxmon.core.session import (
    Role,
    Session,
    SessionSnapshot,
    SessionSpec,
    SessionState,
    reconcile_retry_delay,
    watched_index,
)
from fluxmon.core.verdict import Phase

log = logging.getLogger("fluxmon.sessions")

DEADLINE_CHECK_SECONDS = 5.0
"""While a session has a deadline to come, the worker looks at the wall clock at least this often (a suspend)."""
NUDGE_AFTER_SECONDS = 5.0
"""A Kustomization that has not started on the pushed commit this long after its source has it gets nudged."""
STOP_TIMEOUT_SECONDS = 5.0
FINISHED_KEPT = 20
"""Finished sessions whose last snapshot the manager still answers for (`wait_final`); older ones are dropped,
with their signatures and triggers, so that memory stays flat over days. The engine keeps their outcomes."""

Subscriber = Callable[[SessionSnapshot], None]
HealthSubscriber = Callable[[ClusterHealth], None]


@dataclass
class _Triggers:
    """The reconcile requests made for one session, so that each is made (and reported) once."""

    source_token: str = ""
    source_done: bool = False
    source_handled_at: float | None = None
    source_retries: int = 0
    source_ready_at: float | None = None
    nudged: set[ObjectRef] | None = None
    forbidden_noted: bool = False


class SessionManager:
    """`start()`, `add()` sessions, `subscribe()` to snapshots, `stop()`."""

    def __init__(
        self,
        cluster: ClusterApi,
        *,
        kinds: tuple[str, ...] = DEFAULT_MONITOR_TYPES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.cache = ClusterCache(cluster, kinds, on_change=self._wake_up)
        self.ancestry = GitAncestry(on_answer=self._judge_all_again)
        """Asks git whether a newer commit Flux has contains a session's push (off this worker's thread)."""
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        """The sessions still being followed; a session leaves once its final snapshot is published."""
        self._finished: dict[str, SessionSnapshot] = {}
        """The last FINISHED_KEPT final snapshots, oldest first."""
        self._triggers: dict[str, _Triggers] = {}
        self._signatures: dict[str, tuple[object, ...]] = {}
        self._broken: set[str] = set()
        self._due: set[str] = set()
        """Sessions to evaluate at the next pass whatever changed: new, superseded or cancelled ones."""
        self._all_due = True
        """Evaluate every session at the next pass (git answered, which may concern any of them)."""
        self._deadlines: dict[str, float] = {}
        """When each session must be evaluated again though nothing changed: its timeout, a reconcile to repeat."""
        self._seen: tuple[int, dict[str, KindState]] | None = None
        """The structure version and kind states of the last pass: a change in either concerns every session."""
        self._subscribers: list[Subscriber] = []
        self._health_subscribers: list[HealthSubscriber] = []
        self._health = cluster_health(self.cache.states(), server=cluster.server, context=cluster.context)
        self._lock = threading.RLock()
        self._ended = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.ancestry.start()
        self.cache.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="fluxmon-sessions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Producers first (the cache), then the worker."""
        self.cache.stop()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
            self._thread = None
        self.ancestry.stop()

    # --- the API -------------------------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def subscribe_health(self, subscriber: HealthSubscriber) -> None:
        """Be told when the cluster's health changes (on the worker thread; enqueue only)."""
        with self._lock:
            self._health_subscribers.append(subscriber)

    def health(self) -> ClusterHealth:
        """The cluster's health as of the worker's last pass (decided in core.health, not here)."""
        with self._lock:
            return self._health

    def add(self, spec: SessionSpec) -> None:
        """Follow a new push; an older session on the same remote and branch is superseded.

        Older by git, where it can tell: back-to-back pushes' session files can arrive out of order, and the
        last push must not be superseded by the one before it, which arrived later.
        """
        with self._lock:
            same = [
                s for s in self._sessions.values() if s.spec.follow_key == spec.follow_key and s.final_state is None
            ]
        late = any(self.ancestry.pushed_before(repo=spec.repo, earlier=spec.commit, later=s.spec.commit) for s in same)
        with self._lock:
            for session in [] if late else same:
                session.final_state = SessionState.SUPERSEDED
                self._due.add(session.spec.id)
            self._sessions[spec.id] = Session(spec, ancestry=self.ancestry)
            self._due.add(spec.id)
            if late:
                self._sessions[spec.id].final_state = SessionState.SUPERSEDED
        self._wake_up()

    def cancel(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.final_state is None:
                session.final_state = SessionState.CANCELLED
                self._due.add(session_id)
        self._wake_up()

    def snapshots(self) -> list[SessionSnapshot]:
        """The latest snapshot of every session followed now, and of the last few that finished."""
        with self._lock:
            following = [s.snapshot for s in self._sessions.values() if s.snapshot is not None]
            return [*self._finished.values(), *following]

    def wait_final(self, session_id: str, timeout: float) -> SessionSnapshot | None:
        """Block until the session reaches a final state (or `timeout` passes); returns its last snapshot."""

        def latest() -> SessionSnapshot | None:
            session = self._sessions.get(session_id)
            return session.snapshot if session is not None else self._finished.get(session_id)

        with self._ended:
            self._ended.wait_for(lambda: (s := latest()) is not None and s.state.final, timeout)
            return latest()

    def unfollowed(self, snapshots: Iterable[SessionSnapshot]) -> set[str] | None:
        """Ids of the given sessions whose remote and branch (or tag) no Flux source follows any more.

        None while not every source kind is known (still reading, or unreachable): a cluster half known follows
        nothing yet, and an outage must not bring old failures back.
        """
        states = self.cache.states()
        source_kinds = [kind for kind in ("GitRepository", "OCIRepository") if kind in states]
        known = [states[kind].status for kind in source_kinds]
        # A kind that is not installed (missing) has no sources to follow anything; any other trouble is unknown.
        if KindStatus.SYNCED not in known or any(s not in (KindStatus.SYNCED, KindStatus.MISSING) for s in known):
            return None
        sources = [obj for obj in self.cache.objects().values() if obj.kind in source_kinds]
        gone = set()
        for snapshot in snapshots:
            pushes = (
                Push(remote_url=snapshot.remote, branch=snapshot.branch, commit=snapshot.commit),
                Push(remote_url=snapshot.remote, tag=snapshot.branch, commit=snapshot.commit),
            )
            base = snapshot.repo or None
            if not any(source_follows(obj, push, base_dir=base) for obj in sources for push in pushes):
                gone.add(snapshot.id)
        return gone

    def reconcile_now(self, refs: list[ObjectRef]) -> list[str]:
        """`flux reconcile --with-source`, on demand: each source, then each Kustomization, once.

        It makes requests, so call it off the UI thread; a FluxmonError (Forbidden names the RBAC it needs) ends it.
        """
        requested = []
        for ref in sorted(refs, key=lambda r: r.kind == "Kustomization"):
            api = self.cache.api_for(ref.kind)
            if api is None:
                continue
            self.cluster.request_reconcile(api, ref, _token())
            requested.append(f"{ref.kind}/{ref.name}")
        return requested

    # --- the worker ----------------------------------------------------------------------------------------------

    def _wake_up(self) -> None:
        self._wake.set()

    def _judge_all_again(self) -> None:
        with self._lock:
            self._all_due = True
        self._wake.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(self._until_next_deadline())
            self._wake.clear()
            if stop.is_set():
                return
            try:
                self._pass()
            except Exception:
                # One error boundary for the loop body: a bug in one pass must not end every session.
                log.exception("evaluating sessions failed")

    def _until_next_deadline(self) -> float | None:
        """Seconds to sleep: until the next session's deadline (so a timeout fires on time); None sleeps until a
        change wakes the worker: an idle manager costs no CPU."""
        with self._lock:
            deadlines = [
                at
                for session_id, at in self._deadlines.items()
                if session_id in self._sessions and session_id not in self._broken and at < math.inf
            ]
        if not deadlines:
            return None
        # At most a few seconds while a deadline is pending: the wait runs on the monotonic clock, which stops while
        # the computer is suspended, and deadlines are wall-clock times that go on.
        return min(max(min(deadlines) - self._clock(), 0.0), DEADLINE_CHECK_SECONDS)

    def _pass(self) -> None:
        changed, structure, states = self.cache.take_changes()
        now = self._clock()
        health, health_changed = self._update_health(states)
        with self._lock:
            everyone = self._all_due or health_changed or self._seen != (structure, states)
            due, self._due, self._all_due, self._seen = self._due, set(), False, (structure, states)
            active = [
                s
                for s in self._sessions.values()
                if (s.snapshot is None or not s.snapshot.state.final)
                and (
                    everyone
                    or s.snapshot is None
                    or s.spec.id in due
                    or s.spec.id in self._broken
                    or now >= self._deadlines.get(s.spec.id, math.inf)
                    or not s.reads.isdisjoint(changed)
                )
            ]
        if not active:
            return
        objects: Mapping[ObjectRef, FluxObject] | None = None
        if not any(session.needs_plan(structure) for session in active):
            picked, picked_at = self.cache.pick(set().union(*(session.reads for session in active)))
            objects = picked if picked_at == structure else None  # else added or removed meanwhile: plan anew
        if objects is None:
            objects, structure = self.cache.snapshot()  # a plan is made from every object: only on structural change
        indexes: dict[tuple[str, ...], ObjectIndex] = {}  # one per set of monitored kinds, made when a plan needs it
        for session in active:
            try:
                index = indexes.get(session.spec.monitor_types)
                if index is None and session.needs_plan(structure):
                    index = indexes[session.spec.monitor_types] = watched_index(session.spec, objects)
                snapshot = session.advance(objects, states, now, structure=structure, index=index)
                if not snapshot.state.final:
                    noted = len(session.notes)
                    self._trigger_reconciles(session, snapshot, objects, now)
                    if len(session.notes) != noted:
                        # A note made after the evaluation (a request refused) may come with no write to wake us.
                        with self._lock:
                            self._due.add(session.spec.id)
                        self._wake.set()
                snapshot = self._fetch_events(session, snapshot)
                snapshot = session.snapshot = replace(snapshot, cluster=health, context=self.cluster.context)
            except Exception:
                # Each session behind its own boundary: what breaks one must not stop the others (said once).
                if session.spec.id not in self._broken:
                    self._broken.add(session.spec.id)
                    log.exception("evaluating session %s failed; the other sessions go on", session.spec.id)
                continue
            with self._lock:
                self._deadlines[session.spec.id] = self._next_deadline(session, now)
            self._publish(session, snapshot)

    def _next_deadline(self, session: Session, now: float) -> float:
        """When to evaluate the session again though nothing changes: its timeout, or a reconcile to ask again or
        a lagging Kustomization to nudge (see _trigger_reconciles). Early is harmless; late is not.

        `now` is the time the session was judged at, not the clock after: one that passed while it was judged
        (a slow request) is still to come for it, and the worker wakes at once."""
        deadlines = [session.spec.deadline]
        triggers = self._triggers.get(session.spec.id)
        if triggers is not None:
            if triggers.source_handled_at is not None:
                deadlines.append(triggers.source_handled_at + reconcile_retry_delay(triggers.source_retries))
            if triggers.source_ready_at is not None:
                deadlines.append(triggers.source_ready_at + NUDGE_AFTER_SECONDS)
        # Past ones are spent: a session not final at its timeout is evaluated again on a change (or is broken).
        return min((at for at in deadlines if at > now), default=math.inf)

    def _update_health(self, states: Mapping[str, KindState]) -> tuple[ClusterHealth, bool]:
        """Decide the cluster's health once per pass, and tell the health subscribers when it changed."""
        with self._lock:
            previous = self._health
            health = cluster_health(
                states, server=self.cluster.server, context=self.cluster.context, reached_before=previous.reached
            )
            self._health = health
            subscribers = list(self._health_subscribers) if health != previous else []
        for subscriber in subscribers:
            try:
                subscriber(health)
            except Exception:
                log.exception("a health subscriber failed")
        return health, health != previous

    def _publish(self, session: Session, snapshot: SessionSnapshot) -> None:
        signature = _signature(snapshot)
        with self._lock:
            if self._signatures.get(snapshot.id) == signature:
                return
            self._signatures[snapshot.id] = signature
            subscribers = list(self._subscribers)
            if snapshot.state.final:
                self._forget(snapshot)
                self._ended.notify_all()
        for subscriber in subscribers:
            try:
                subscriber(snapshot)
            except Exception:
                log.exception("a snapshot subscriber failed")

    def _forget(self, final: SessionSnapshot) -> None:
        """A final session is never evaluated again: keep its last snapshot for a while, and drop the rest."""
        self._sessions.pop(final.id, None)
        self._signatures.pop(final.id, None)
        self._triggers.pop(final.id, None)
        self._deadlines.pop(final.id, None)
        self._finished[final.id] = final
        while len(self._finished) > FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def _trigger_reconciles(
        self, session: Session, snapshot: SessionSnapshot, objects: Mapping[ObjectRef, FluxObject], now: float
    ) -> None:
        """`flux reconcile --with-source`, as needed: the source at once, lagging Kustomizations later."""
        if not session.spec.reconcile:
            return
        triggers = self._triggers.setdefault(session.spec.id, _Triggers(nudged=set()))
        sources = [r for r in snapshot.resources if r.role is Role.SOURCE]
        for source in sources:
            obj = objects.get(source.ref)
            handled = (
                obj is not None
                and bool(triggers.source_token)
                and obj.last_handled_reconcile_at == triggers.source_token
            )
            if handled and not triggers.source_done:
                triggers.source_done, triggers.source_handled_at = True, now
                session.note(f"{source.ref.kind}/{source.ref.name} took the reconcile request")
            if not triggers.source_token and source.phase is not Phase.READY:
                triggers.source_token = _token()
                self._request(session, triggers, source.ref, triggers.source_token)
            elif (
                triggers.source_handled_at is not None
                and source.phase is Phase.PENDING
                and now - triggers.source_handled_at >= reconcile_retry_delay(triggers.source_retries)
            ):
                # It took the request yet still has an older revision: the Git host served the push late. Ask again.
                triggers.source_retries += 1
                triggers.source_token, triggers.source_done, triggers.source_handled_at = _token(), False, None
                session.note(f"{source.ref.kind}/{source.ref.name} fetched an older revision; asking again")
                self._request(session, triggers, source.ref, triggers.source_token)
        if sources and all(s.phase is Phase.READY for s in sources):
            triggers.source_ready_at = triggers.source_ready_at or now
            if now - triggers.source_ready_at >= NUDGE_AFTER_SECONDS and triggers.nudged is not None:
                lagging = [
                    r.ref
                    for r in snapshot.resources
                    if r.role is Role.KUSTOMIZATION and r.phase is Phase.PENDING and r.ref not in triggers.nudged
                ]
                for ref in lagging:
                    triggers.nudged.add(ref)
                    self._request(session, triggers, ref, _token())

    def _request(self, session: Session, triggers: _Triggers, ref: ObjectRef, token: str) -> None:
        api = self.cache.api_for(ref.kind)
        if api is None:
            return
        try:
            self.cluster.request_reconcile(api, ref, token)
            session.note(f"requested a reconcile of {ref.kind}/{ref.name}")
        except Forbidden:
            if not triggers.forbidden_noted:
                triggers.forbidden_noted = True
                session.note(f"no permission to patch {api.qualified}: waiting for Flux's own interval instead")
        except FluxmonError as error:
            log.info("reconcile request for %s failed: %s", ref, error.message)

    def _fetch_events(self, session: Session, snapshot: SessionSnapshot) -> SessionSnapshot:
        """Read the Events of newly failed objects (once per object) into the snapshot: they say most."""
        for resource in snapshot.resources:
            if resource.phase is not Phase.FAILED or resource.ref in session.events:
                continue
            try:
                events = tuple(e for e in self.cluster.events(resource.ref) if _tried(e, resource.revision))
            except FluxmonError as error:
                events = ()
                log.info("could not read the events of %s: %s", resource.ref, error.message)
            snapshot = session.add_events(resource.ref, events) or snapshot
        return snapshot


def _signature(snapshot: SessionSnapshot) -> tuple[object, ...]:
    """What a user can see change; timestamps alone do not make a new snapshot worth sending."""
    return (
        snapshot.state,
        snapshot.message,
        snapshot.notes,
        snapshot.cluster,
        tuple((r.ref, r.phase, r.reason, r.message, r.revision, len(r.events)) for r in snapshot.resources),
    )


def _tried(event: FluxEvent, revision: str) -> bool:
    """Whether an event belongs to the revision the object tried: it names that revision, or none at all.

    Flux's controllers put the revision they worked on in each event's annotations; an event naming another one
    is about an earlier (or later) attempt.
    """
    if not event.revision or not revision or event.revision == revision:
        return True
    said, tried = parse_revision(event.revision), parse_revision(revision)
    if said.digest and tried.digest:
        return said.digest.startswith(tried.digest) or tried.digest.startswith(said.digest)
    return False


def _token() -> str:
    """An RFC 3339 timestamp with nanoseconds, as `flux reconcile` writes into requestedAt."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time.time_ns() % 1_000_000_000:09d}Z"
