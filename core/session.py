"""A deploy session: one pushed commit, followed until Flux has applied it everywhere, failed, or run out of time.

The decisions are pure: `evaluate()` takes the session's spec, a snapshot of the cluster cache and the clock,
and returns an immutable SessionSnapshot. The manager (core.manager) owns the threads and calls it on every
change. States, as DESIGN §5 has them:

    waiting-for-source -> reconciling -> succeeded | failed | timed-out | superseded | cancelled | not-deployed

Fail fast: a followed object that failed at the pushed commit fails the session at once, while the rest is still
followed for the details. An object that carries no trace of the commit (a HelmRelease from a HelmRepository)
counts as deployed once its parent Kustomization has applied the push and it is Ready at its generation.

Overtaken pushes: when an object is at another commit than the pushed one, git says how the two relate (the
`lineage` that `evaluate()` is given, from core.ancestry). At a descendant, the object is judged at that newer
commit, which deploys (or fails) the push with it; at a commit of a rewritten history, the push is superseded.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from fluxmon.core.ancestry import Lineage, Question, Relation
from fluxmon.core.cluster import FluxEvent
from fluxmon.core.config import DEFAULT_MONITOR_TYPES, DEFAULT_TIMEOUT_SECONDS
from fluxmon.core.health import TROUBLED_STATUSES, ClusterHealth
from fluxmon.core.hints import Hint, hint_for
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.objects import FluxObject, ObjectRef
from fluxmon.core.plan import (
    ObjectIndex,
    Plan,
    Push,
    dependencies_by_dependent,
    normalize_remote_url,
    plan_for_push,
)
from fluxmon.core.redact import redact_text, redact_url
from fluxmon.core.revision import parse_revision, revision_matches, short_revision, short_sha
from fluxmon.core.spool import SessionRequest, created_at_seconds
from fluxmon.core.verdict import Phase, Verdict, display_revision, verdict


class Role(StrEnum):
    """What an object does for the push: the plan's parts, in the order Flux works (core.plan)."""

    SOURCE = "source"
    KUSTOMIZATION = "kustomization"
    HELMRELEASE = "helmrelease"
    UPSTREAM = "upstream"
    """A source or Kustomization the push depends on but does not change (shown, not counted)."""


class SessionState(StrEnum):
    WAITING_FOR_SOURCE = "waiting-for-source"
    RECONCILING = "reconciling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    NOT_DEPLOYED = "not-deployed"

    @property
    def final(self) -> bool:
        return self not in (SessionState.WAITING_FOR_SOURCE, SessionState.RECONCILING)


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSpec:
    """What to follow: a pushed commit on a remote and branch, and how."""

    id: str
    remote_url: str
    branch: str = ""
    tag: str = ""
    commit: str
    subject: str = ""
    repo: str = ""
    changed_paths: tuple[str, ...] | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    reconcile: bool = False
    monitor_types: tuple[str, ...] = DEFAULT_MONITOR_TYPES
    confirmed: bool = True
    created_at: float = field(default_factory=time.time)
    """Wall-clock seconds; the timeout counts from here, also across restarts."""
    remote_name: str = ""
    """The git remote pushed to ("" for a push to a URL): where to fetch a newer commit Flux has and we lack."""
    replaced: str = ""
    """The tip the push replaced on the remote ("" or zeros when unknown, or a new branch)."""

    def question(self, seen: str) -> Question:
        """What to ask git about a commit `seen` on a Flux object (see core.ancestry)."""
        ref = f"refs/heads/{self.branch}" if self.branch else f"refs/tags/{self.tag}" if self.tag else ""
        return Question(
            repo=self.repo,
            pushed=self.commit,
            seen=seen,
            replaced=self.replaced,
            remote=self.remote_name or self.remote_url,
            ref=ref,
        )

    @property
    def push(self) -> Push:
        return Push(
            remote_url=self.remote_url,
            branch=self.branch,
            tag=self.tag,
            commit=self.commit,
            changed_paths=self.changed_paths,
        )

    @property
    def deadline(self) -> float:
        """When the session times out (wall-clock seconds): the judge and the manager's wake-up read this one sum."""
        return self.created_at + self.timeout_seconds

    @property
    def follow_key(self) -> tuple[str, str]:
        """Sessions with the same key follow the same thing: a newer one supersedes an older one."""
        return (normalize_remote_url(self.remote_url, base_dir=self.repo or None), self.branch or self.tag)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceStatus:
    """One followed object, as the details window and the terminal show it."""

    ref: ObjectRef
    role: Role
    """`source`, `kustomization`, `helmrelease`, or `upstream` (a dependency that this push does not deploy)."""
    phase: Phase
    reason: str
    message: str
    revision: str
    since: float
    """When (wall clock) it entered its current phase, as far as this session has seen."""
    seconds_in_phase: Mapping[str, float]
    depends_on: tuple[tuple[ObjectRef, Phase], ...] = ()
    """Its `spec.dependsOn` alone, each with its phase: what it waits for, not what applies it."""
    applied_by: ObjectRef | None = None
    """The Kustomization that applies it (its inventory, or the labels kustomize-controller sets)."""
    parent: ObjectRef | None = None
    """Where it hangs in the details tree: a Kustomization under its source, a HelmRelease under what applies it."""
    hint: Hint | None = None
    events: tuple[FluxEvent, ...] = ()
    retrying: bool = False
    """A Helm install or upgrade that failed and is retried at once: still on its way, but the failure is news (its
    message reads "upgrade failed, retry 1 of 3: …"), so the tooltip says it beside the session's progress."""

    @property
    def error(self) -> str:
        """The best error text: the newest Warning event that says more, else the condition's message."""
        warning = next((e for e in self.events if e.type == "Warning" and e.message), None)
        return warning.message if warning and len(warning.message) > len(self.message) else self.message


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSnapshot:
    """The whole session at one moment; immutable, so it can cross threads and be compared."""

    id: str
    state: SessionState
    message: str
    commit: str
    branch: str
    remote: str
    subject: str
    repo: str
    started_at: float
    updated_at: float
    ended_at: float | None
    resources: tuple[ResourceStatus, ...]
    notes: tuple[str, ...] = ()
    failed: ObjectRef | None = None
    confirmed: bool = True
    cluster: ClusterHealth = field(default_factory=ClusterHealth)
    """The cluster's health when this snapshot was taken (core.health decides it, once)."""
    context: str = ""
    """The kubeconfig context of the cluster this is the session on (a push is followed on each; see core.push)."""

    @property
    def short_commit(self) -> str:
        return short_sha(self.commit)

    @property
    def elapsed(self) -> float:
        return (self.ended_at or self.updated_at) - self.started_at

    def count(self, *phases: Phase) -> int:
        return sum(1 for resource in self.resources if resource.phase in phases and resource.role is not Role.UPSTREAM)


@dataclass
class _Timeline:
    """Per object: the phase it is in, since when, and the time spent in each phase so far."""

    phase: Phase
    since: float
    seconds: dict[str, float] = field(default_factory=dict)


class AncestryOracle(Protocol):
    """Answers, from git, how a commit on a Flux object relates to the pushed one; None while it is asking."""

    def lookup(self, question: Question) -> Lineage | None: ...


class VerdictMemo:
    """Each followed object's verdict (redacted) and the commits it names, kept until the object is replaced.

    Cached objects are immutable and replaced on every write, so `is` tells whether one changed: a status write
    re-judges that object, not the hundred others a session follows. Same answers as without it, only cheaper.
    """

    def __init__(self) -> None:
        self._verdicts: dict[ObjectRef, tuple[FluxObject, str, FluxObject | None, Verdict]] = {}
        self._seen: dict[ObjectRef, tuple[FluxObject, tuple[str, ...]]] = {}

    def verdict(self, obj: FluxObject, target: str, chart: FluxObject | None) -> Verdict:
        kept = self._verdicts.get(obj.ref)
        if kept is not None and kept[0] is obj and kept[1] == target and kept[2] is chart:
            return kept[3]
        result = redacted_verdict(obj, target, chart)
        self._verdicts[obj.ref] = (obj, target, chart, result)
        return result

    def commits_seen(self, obj: FluxObject) -> tuple[str, ...]:
        kept = self._seen.get(obj.ref)
        if kept is not None and kept[0] is obj:
            return kept[1]
        seen = commits_seen(obj)
        self._seen[obj.ref] = (obj, seen)
        return seen

    def keep_only(self, refs: frozenset[ObjectRef]) -> None:
        """Forget objects the plan no longer reads (called when it is made anew)."""
        self._verdicts = {ref: kept for ref, kept in self._verdicts.items() if ref in refs}
        self._seen = {ref: kept for ref, kept in self._seen.items() if ref in refs}


def redacted_verdict(obj: FluxObject, target: str, chart: FluxObject | None) -> Verdict:
    """The verdict with credentials taken out of its message.

    A controller's message can name a URL with its credentials (source-controller: `unable to clone '<url>'`);
    redacted here, nothing downstream (terminal, --json, the store on disk, the tray) ever holds them.
    """
    result = verdict(obj, target, chart=chart)
    message = redact_text(result.message)
    return result if message == result.message else replace(result, message=message)


class Session:
    """One session's mutable bookkeeping (timelines, fetched events); `evaluate` does the judging."""

    def __init__(self, spec: SessionSpec, *, ancestry: AncestryOracle | None = None) -> None:
        self.spec = spec
        self.ancestry = ancestry
        self.timelines: dict[ObjectRef, _Timeline] = {}
        self.events: dict[ObjectRef, tuple[FluxEvent, ...]] = {}
        self.notes: list[str] = []
        self.snapshot: SessionSnapshot | None = None
        self._plan: tuple[int, Plan] | None = None
        """The plan, and the cache's structure version it was made at: status writes leave it as it is."""
        self.reads: frozenset[ObjectRef] = frozenset()
        """Every object the last evaluation read: a write to any other object cannot change this session."""
        self._memo = VerdictMemo()
        self.final_state: SessionState | None = None
        """Set from outside (superseded, cancelled)."""

    def add_events(self, ref: ObjectRef, events: tuple[FluxEvent, ...]) -> SessionSnapshot | None:
        """Attach an object's Events to the current snapshot, also a final one (it was made before they were read)."""
        self.events[ref] = tuple(replace(event, message=redact_text(event.message)) for event in events)
        if self.snapshot is not None:
            self.snapshot = _with_events(self.snapshot, self.events)
        return self.snapshot

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def advance(
        self,
        objects: Mapping[ObjectRef, FluxObject],
        states: Mapping[str, KindState],
        now: float,
        *,
        structure: int | None = None,
        index: ObjectIndex | None = None,
    ) -> SessionSnapshot:
        """Evaluate, update the timelines, and return the new snapshot (final states stick).

        `structure`: the cache's structure version of `objects`; with it, the plan is reused until it changes.
        `objects` must hold every cached object when `needs_plan(structure)`; otherwise `reads` are enough.
        `index`: those objects of the session's monitored kinds indexed (`watched_index`), shared by the sessions
        that plan in the same pass.
        """
        if self.snapshot is not None and self.snapshot.state.final:
            return self.snapshot
        if self._plan is None or structure is None or self._plan[0] != structure:
            plan = plan_for_push(
                index if index is not None else watched_index(self.spec, objects),
                self.spec.push,
                base_dir=self.spec.repo or None,
            )
            self._plan = None if structure is None else (structure, plan)
            self.reads = objects_read(plan, objects)
            self._memo.keep_only(self.reads)
        else:
            plan = self._plan[1]
        snapshot = evaluate(
            self.spec,
            objects,
            states,
            now=now,
            events=self.events,
            notes=tuple(self.notes),
            plan=plan,
            lineage=self._lineage(plan, objects),
            memo=self._memo,
            timeline=lambda ref, phase: self._timeline(ref, phase, now),
        )
        if self.final_state is not None:
            snapshot = replace(snapshot, state=self.final_state, message=_final_message(self.final_state), ended_at=now)
        self.snapshot = snapshot
        return snapshot

    def _timeline(self, ref: ObjectRef, phase: Phase, now: float) -> tuple[float, dict[str, float]]:
        """Move an object's timeline to `phase` at `now`; since when it is in it, and the seconds in each phase."""
        timeline = self.timelines.get(ref)
        if timeline is None:
            timeline = self.timelines[ref] = _Timeline(phase=phase, since=now)
        elif timeline.phase != phase:
            timeline.seconds[timeline.phase.value] = timeline.seconds.get(timeline.phase.value, 0.0) + (
                now - timeline.since
            )
            timeline.phase, timeline.since = phase, now
        seconds = dict(timeline.seconds)
        seconds[phase.value] = seconds.get(phase.value, 0.0) + (now - timeline.since)
        return timeline.since, seconds

    def needs_plan(self, structure: int) -> bool:
        """Whether the next evaluation at this structure version plans anew (and so needs every object)."""
        return self._plan is None or self._plan[0] != structure

    def _lineage(self, plan: Plan, objects: Mapping[ObjectRef, FluxObject]) -> dict[str, Lineage]:
        """What git has answered so far about the other commits the followed objects are at."""
        if self.ancestry is None or not self.spec.repo:
            return {}
        answers = {}
        for ref in plan.followed:
            obj = objects.get(ref)
            for seen in self._memo.commits_seen(obj) if obj is not None else ():
                if seen in answers or revision_matches(seen, self.spec.commit):
                    continue
                answer = self.ancestry.lookup(self.spec.question(seen))
                if answer is not None:
                    answers[seen] = answer
        return answers


def objects_read(plan: Plan, objects: Mapping[ObjectRef, FluxObject]) -> frozenset[ObjectRef]:
    """What `evaluate` reads for a plan: the followed and upstream objects, and the sources (a HelmRelease's
    HelmChart) and parents they name. Only structural writes change these names, and those replan."""
    reads = {*plan.followed, *plan.upstream}
    for ref in tuple(reads):
        obj = objects.get(ref)
        if obj is not None:
            reads.update(named for named in (obj.source_ref, obj.owner) if named is not None)
    return frozenset(reads)


def commits_seen(obj: FluxObject) -> tuple[str, ...]:
    """The commits an object names, newest first: what it last tried, then what it applied (or fetched).

    Only revisions that name git commits count: not OCI digests, nor a chart from a Helm repository.
    """
    if obj.kind == "Kustomization" and obj.source_ref is not None and obj.source_ref.kind != "GitRepository":
        return ()
    if obj.kind not in ("GitRepository", "Kustomization", "HelmRelease"):
        return ()
    seen = []
    for text in (obj.last_attempted_revision, display_revision(obj)):
        revision = parse_revision(text)
        if obj.kind == "HelmRelease" and not revision.truncated:
            continue  # a chart version's suffix is a commit only for a chart built from git
        if revision.digest and revision.digest not in seen and len(revision.digest) >= 7:
            seen.append(revision.digest)
    return tuple(seen)


def _with_events(snapshot: SessionSnapshot, events: Mapping[ObjectRef, tuple[FluxEvent, ...]]) -> SessionSnapshot:
    resources = tuple(replace(r, events=events.get(r.ref, r.events)) for r in snapshot.resources)
    return replace(snapshot, resources=resources)


def _final_message(state: SessionState) -> str:
    return {
        SessionState.SUPERSEDED: "superseded by a newer push to the same branch",
        SessionState.CANCELLED: "cancelled",
    }.get(state, state.value)


ROLE_ORDER = {role: order for order, role in enumerate(Role)}


def evaluate(
    spec: SessionSpec,
    objects: Mapping[ObjectRef, FluxObject],
    states: Mapping[str, KindState],
    *,
    now: float,
    events: Mapping[ObjectRef, tuple[FluxEvent, ...]] | None = None,
    notes: tuple[str, ...] = (),
    plan: Plan | None = None,
    lineage: Mapping[str, Lineage] | None = None,
    memo: VerdictMemo | None = None,
    timeline: Callable[[ObjectRef, Phase], tuple[float, dict[str, float]]] | None = None,
) -> SessionSnapshot:
    """Judge the session from a snapshot of the cluster; pure: same inputs, same snapshot.

    `plan`: discovery's plan for these objects, when the caller knows it is still current (Session.advance).
    `lineage`: git's answers (core.ancestry) for the other commits that followed objects are at, by digest.
    `memo`: the session's memo of verdicts, so that objects that did not change are not judged again.
    `timeline`: since when each object is in its phase, and for how long in each (the Session keeps them).
    """
    events = events or {}
    lineage = lineage or {}
    watched = _Watched(objects, spec.monitor_types)
    if plan is None:
        plan = plan_for_push(watched_index(spec, objects), spec.push, base_dir=spec.repo or None)
    all_notes = list(notes) + _kind_notes(spec, states)
    if plan.cycles:
        all_notes += [f"dependency cycle: {' -> '.join(str(r) for r in cycle)}" for cycle in plan.cycles]
    overtaken = _overtaken(plan, watched, spec.commit, lineage)
    all_notes += _lineage_notes(plan, watched, spec.commit, lineage)
    verdicts = _verdicts(plan, watched, spec.commit, overtaken, pushed_at=spec.created_at, memo=memo)
    outgoing = dependencies_by_dependent(plan.edges)
    # In the plan's order, which is Role's (ROLE_ORDER) with each role's objects sorted: no sort needed here.
    resources = tuple(
        _resource(
            ref,
            role,
            verdicts[ref],
            outgoing.get(ref, []),
            verdicts,
            events,
            timeline(ref, verdicts[ref].phase) if timeline is not None else (now, {}),
            watched.get(ref),
        )
        for ref, role in _roles(plan)
    )
    state, message, failed = _judge(spec, plan, verdicts, states, now, overtaken=overtaken, lineage=lineage)
    return SessionSnapshot(
        id=spec.id,
        state=state,
        message=message,
        commit=spec.commit,
        branch=spec.branch or spec.tag,
        remote=redact_url(spec.remote_url),
        subject=spec.subject,
        repo=spec.repo,
        started_at=spec.created_at,
        updated_at=now,
        ended_at=now if state.final else None,
        resources=resources,
        notes=tuple(all_notes),
        failed=failed,
        confirmed=spec.confirmed,
    )


def watched_index(spec: SessionSpec, objects: Mapping[ObjectRef, FluxObject]) -> ObjectIndex:
    """The objects of the kinds the session follows, indexed for planning."""
    return ObjectIndex.of(obj for ref, obj in objects.items() if ref.kind in spec.monitor_types)


class _Watched(Mapping[ObjectRef, FluxObject]):
    """The objects of the kinds a session follows, as a view: no copy of the cache per session and pass."""

    def __init__(self, objects: Mapping[ObjectRef, FluxObject], kinds: tuple[str, ...]) -> None:
        self._objects = objects
        self._kinds = kinds

    def __getitem__(self, ref: ObjectRef) -> FluxObject:
        if ref.kind not in self._kinds:
            raise KeyError(ref)
        return self._objects[ref]

    def __iter__(self) -> Iterator[ObjectRef]:
        return (ref for ref in self._objects if ref.kind in self._kinds)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _roles(plan: Plan) -> list[tuple[ObjectRef, Role]]:
    return (
        [(ref, Role.SOURCE) for ref in plan.sources]
        + [(ref, Role.KUSTOMIZATION) for ref in plan.kustomizations]
        + [(ref, Role.HELMRELEASE) for ref in plan.helm_releases]
        + [(ref, Role.UPSTREAM) for ref in plan.upstream]
    )


def _overtaken(
    plan: Plan, objects: Mapping[ObjectRef, FluxObject], commit: str, lineage: Mapping[str, Lineage]
) -> dict[ObjectRef, str]:
    """The followed objects to judge at a newer commit that contains the pushed one, and that commit.

    An object at the pushed commit itself, or Ready or failed there, is judged at the pushed commit as ever.
    """
    newer: dict[ObjectRef, str] = {}
    if not lineage:
        return newer  # the common case: every object names the pushed commit, or git has not answered yet
    for ref in plan.followed:
        obj = objects.get(ref)
        descendant = next(
            (
                answer.commit
                for seen in (commits_seen(obj) if obj is not None else ())
                if (answer := lineage.get(seen)) is not None and answer.relation is Relation.CONTAINS
            ),
            None,
        )
        if obj is not None and descendant and verdict(obj, commit).phase not in (Phase.READY, Phase.FAILED):
            newer[ref] = descendant
    return newer


def _lineage_notes(
    plan: Plan, objects: Mapping[ObjectRef, FluxObject], commit: str, lineage: Mapping[str, Lineage]
) -> list[str]:
    """Say what git could not tell, so that a timeout that follows is explained."""
    notes: list[str] = []
    if not lineage:
        return notes
    for ref in plan.followed:
        obj = objects.get(ref)
        for seen in commits_seen(obj) if obj is not None else ():
            answer = lineage.get(seen)
            if answer is not None and answer.relation is Relation.UNKNOWN:
                note = (
                    f"cannot tell whether {short_sha(seen)} ({ref} has it) contains {short_sha(commit)}: {answer.why}"
                )
                if note not in notes:
                    notes.append(note)
    return notes


def _verdicts(
    plan: Plan,
    objects: Mapping[ObjectRef, FluxObject],
    commit: str,
    overtaken: Mapping[ObjectRef, str],
    *,
    pushed_at: float,
    memo: VerdictMemo | None = None,
) -> dict[ObjectRef, Verdict]:
    judge = memo.verdict if memo is not None else redacted_verdict
    verdicts = {
        ref: judge(obj, overtaken.get(ref, commit), _chart_of(obj, objects))
        for ref in (*plan.followed, *plan.upstream)
        if (obj := objects.get(ref)) is not None
    }
    for ref in plan.helm_releases:
        result = verdicts.get(ref)
        if result is None or result.phase is not Phase.READY or result.target_matched is not None:
            continue
        # No trace of the commit: deployed once the parent that applies it has applied the push (DESIGN §3).
        parent = objects[ref].owner
        parent_verdict = verdicts.get(parent) if parent else None
        if parent_verdict is not None and parent_verdict.phase is not Phase.READY:
            verdicts[ref] = replace(
                result,
                phase=Phase.PENDING,
                reason="ParentNotApplied",
                message=f"waiting for {parent} to apply the pushed commit",
            )
    for ref in (*plan.sources, *plan.helm_releases):
        result = verdicts.get(ref)
        parent = objects[ref].owner if result is not None else None
        parent_verdict = verdicts.get(parent) if parent else None
        applied = parent_verdict is None or parent_verdict.phase is Phase.READY
        if result is not None and _failing_since_before_the_push(objects[ref], result, pushed_at, applied=applied):
            verdicts[ref] = replace(
                result,
                phase=Phase.PENDING,
                message=f"failing since before this push, which may fix it: {result.message}",
            )
    return verdicts


def _chart_of(obj: FluxObject, objects: Mapping[ObjectRef, FluxObject]) -> FluxObject | None:
    """The HelmChart a HelmRelease's spec.chartRef names, which alone says whether its version names a commit."""
    if obj.kind != "HelmRelease" or obj.source_ref is None or obj.source_ref.kind != "HelmChart":
        return None
    return objects.get(obj.source_ref)


def _failing_since_before_the_push(obj: FluxObject, result: Verdict, pushed_at: float, *, applied: bool) -> bool:
    """Whether a source's or HelmRelease's failure, which names no commit, is older than the push.

    Such a failure (a branch the push creates, a Secret it adds, a values error it fixes) is not this push's
    failure until the controller has tried again. Flux moves a condition's lastTransitionTime only when its status,
    reason or message change (fluxcd/pkg runtime/conditions/setter.go, Set), so the same failure, retried, keeps
    its old time; and a reconcile request handled after the push (the session's own, with --reconcile and in the
    tray) means it has been tried again. A Stalled object only moves with a spec change, which the push that fixes
    it brings: the stall stands once the Kustomization that applies the object (`applied`, True when there is none)
    has applied the push and the generation has not moved.
    """
    if result.phase is not Phase.FAILED or result.target_matched:
        return False
    stalled = obj.condition("Stalled")
    if stalled is not None and stalled.status == "True":
        return not applied
    since = _timestamp(result.transitioned_at)
    handled = _timestamp(obj.last_handled_reconcile_at)
    # Flux truncates condition times to the second (setter.go), so a failure in the push's own second is new.
    if since is None or since >= math.floor(pushed_at):
        return False
    return handled is None or handled < pushed_at


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _timestamp(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed, as requestedAt tokens have), or None."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp()


def _resource(
    ref: ObjectRef,
    role: Role,
    result: Verdict,
    dependencies: list[ObjectRef],
    verdicts: Mapping[ObjectRef, Verdict],
    events: Mapping[ObjectRef, tuple[FluxEvent, ...]],
    since: tuple[float, dict[str, float]],
    obj: FluxObject | None,
) -> ResourceStatus:
    """`dependencies`: what `ref` depends on (dependsOn, its source, what applies it), from the plan's edges."""
    known = [dependency for dependency in dependencies if dependency in verdicts]
    declared = set(obj.depends_on) if obj is not None else set()
    depends = tuple((dep, verdicts[dep].phase) for dep in known if dep in declared)
    appliers = [dep for dep in known if dep.kind == "Kustomization" and dep not in declared]
    owner = obj.owner if obj is not None else None
    applied_by = appliers[0] if appliers else owner if owner in verdicts else None
    parents = [dep for dep in known if dep.kind != ref.kind]
    troubled = result.phase in (Phase.FAILED, Phase.SUSPENDED, Phase.WAITING) or result.retrying
    return ResourceStatus(
        ref=ref,
        role=role,
        phase=result.phase,
        reason=result.reason,
        message=result.message,
        revision=result.revision,
        since=since[0],
        seconds_in_phase=since[1],
        depends_on=depends,
        applied_by=applied_by,
        parent=min(parents, key=lambda dep: dep.kind != "Kustomization") if parents else None,
        hint=hint_for(ref, result.reason) if troubled else None,
        events=events.get(ref, ()),
        retrying=result.retrying,
    )


def _judge(
    spec: SessionSpec,
    plan: Plan,
    verdicts: Mapping[ObjectRef, Verdict],
    states: Mapping[str, KindState],
    now: float,
    *,
    overtaken: Mapping[ObjectRef, str],
    lineage: Mapping[str, Lineage],
) -> tuple[SessionState, str, ObjectRef | None]:
    target = short_sha(spec.commit)
    timed_out = now >= spec.deadline
    source_states = [states[k] for k in ("GitRepository", "OCIRepository") if k in states]
    # No verdict before every kind has been read at least once: a HelmRelease not listed yet is not "ready".
    syncing = [kind for kind in spec.monitor_types if kind in states and states[kind].status is KindStatus.SYNCING]
    if syncing and not timed_out:
        return SessionState.WAITING_FOR_SOURCE, f"reading the cluster ({', '.join(syncing)})", None
    if plan.empty:
        settled = all(s.status is not KindStatus.SYNCING for s in states.values())
        # Not followed by any source only when every source kind was read: one that could not be (unreachable,
        # say) may hold the very source that follows this push.
        reachable = any(s.status is KindStatus.SYNCED for s in source_states) and not any(
            s.status in (KindStatus.UNREACHABLE, KindStatus.UNAUTHORIZED, KindStatus.FORBIDDEN) for s in source_states
        )
        # No source kind served at all: Flux is not installed there (one of several contexts may be a plain one).
        no_flux = bool(source_states) and all(s.status is KindStatus.MISSING for s in source_states)
        if settled and no_flux:
            return SessionState.NOT_DEPLOYED, "Flux is not installed here: no source kind is served", None
        if settled and reachable:
            where = spec.branch or spec.tag
            why = plan.notes[0] if plan.notes else f"no Flux source follows {redact_url(spec.remote_url)} {where}"
            return SessionState.NOT_DEPLOYED, why, None
        reason = next((s.message for s in source_states if s.message), "reading the cluster")
        if timed_out:
            return SessionState.TIMED_OUT, f"timed out: {reason}", None
        return SessionState.WAITING_FOR_SOURCE, reason, None

    # Fail fast, in the order Flux works: sources, then Kustomizations, then HelmReleases.
    for ref in plan.followed:
        result = verdicts.get(ref)
        if result is not None and result.phase is Phase.FAILED:
            first_line = result.message.strip().splitlines()[0] if result.message.strip() else ""
            at = f" at {short_sha(overtaken[ref])}, a newer commit that contains {target}" if ref in overtaken else ""
            return (
                SessionState.FAILED,
                f"{ref.kind} {ref.namespace}/{ref.name} failed{at}: {result.reason}: {first_line}",
                ref,
            )

    # A force push rewrote the branch: what the source fetched does not contain the push, and never will.
    for ref in plan.sources:
        for seen in commits_seen_in(verdicts.get(ref)):
            answer = lineage.get(seen)
            if answer is not None and answer.relation is Relation.REWRITTEN:
                return (
                    SessionState.SUPERSEDED,
                    f"superseded: {ref} fetched {short_sha(answer.commit)}, which does not contain {target}: "
                    "the branch's history was rewritten (a force push)",
                    None,
                )

    sources_at_target = [ref for ref in plan.sources if ref in verdicts and verdicts[ref].phase is Phase.READY]
    pending = [
        ref for ref in plan.followed if ref in verdicts and verdicts[ref].phase not in (Phase.READY, Phase.SUSPENDED)
    ]
    if not pending and sources_at_target:
        suspended = [ref for ref in plan.followed if verdicts[ref].phase is Phase.SUSPENDED]
        # "As part of" only when what applies the manifests applied the newer commit, not when only the source
        # moved on after the pushed commit itself was applied.
        appliers = (*plan.kustomizations, *plan.helm_releases)
        newer = next((overtaken[ref] for ref in appliers if ref in overtaken), "")
        deployed = f"{target} deployed as part of {short_sha(newer)}" if newer else f"{target} deployed"
        done = f"{deployed}: {len(plan.followed) - len(suspended)} resources ready"
        if suspended:
            done += f"; not applied where suspended: {', '.join(str(r) for r in suspended)}"
        return SessionState.SUCCEEDED, done, None

    state = SessionState.RECONCILING if sources_at_target else SessionState.WAITING_FOR_SOURCE
    if timed_out:
        return SessionState.TIMED_OUT, _partial_report(spec, plan, verdicts, sources_at_target), None
    if not sources_at_target:
        source = plan.sources[0]
        result = verdicts.get(source)
        where = short_revision(result.revision) if result and result.revision else "nothing yet"
        return state, f"waiting for {source} to fetch {target} (it has {where})", None
    return state, f"{len(plan.followed) - len(pending)} of {len(plan.followed)} resources at {target}", None


def commits_seen_in(result: Verdict | None) -> tuple[str, ...]:
    """The commit a source's verdict names (its fetched revision), if any."""
    digest = parse_revision(result.revision).digest if result is not None else ""
    return (digest,) if digest else ()


def _partial_report(
    spec: SessionSpec, plan: Plan, verdicts: Mapping[ObjectRef, Verdict], sources: list[ObjectRef]
) -> str:
    """What was done and what was still pending, and why, when time ran out."""
    seconds = spec.timeout_seconds
    after = f"{seconds / 60:g}m" if seconds % 60 == 0 else f"{seconds:g}s"  # as given: "8s", not "0.133333m"
    if not sources:
        source = plan.sources[0]
        has = verdicts[source].revision if source in verdicts else ""
        unconfirmed = "" if spec.confirmed else " (the push was never confirmed: did it reach the remote?)"
        return (
            f"timed out after {after}: {source} never fetched {short_sha(spec.commit)} (it has "
            f"{short_revision(has) or 'nothing'}){unconfirmed}; is source-controller running? "
            f"Try: flux reconcile source git {source.name} -n {source.namespace}"
        )
    ready = [ref for ref in plan.followed if ref in verdicts and verdicts[ref].phase is Phase.READY]
    waiting = [
        f"{ref.kind}/{ref.name} ({verdicts[ref].phase.value}: {verdicts[ref].reason or 'no status'})"
        for ref in plan.followed
        if ref in verdicts and verdicts[ref].phase is not Phase.READY
    ]
    return f"timed out after {after}: {len(ready)} ready, still pending: {', '.join(waiting)}"


def _kind_notes(spec: SessionSpec, states: Mapping[str, KindState]) -> list[str]:
    """One note per trouble, naming the kinds it hits: an unreachable server is one sentence, not one per kind."""
    kinds_by_message: dict[str, list[str]] = {}
    for kind, state in sorted(states.items()):
        if kind in spec.monitor_types and state.status in TROUBLED_STATUSES:
            kinds_by_message.setdefault(state.message, []).append(state.kind)
    return [f"{', '.join(kinds)}: {message}" for message, kinds in kinds_by_message.items()]


RECONCILE_RETRY_SECONDS = (2.0, 4.0, 8.0, 15.0, 30.0)
"""After a source took a reconcile request but still had an older revision, ask again after these waits (the
last repeats until the session ends): a Git host may serve a pushed commit a moment after the push returned."""


def reconcile_retry_delay(attempt: int) -> float:
    """Seconds to wait, after the source took request number `attempt` (0 first), before asking again."""
    return RECONCILE_RETRY_SECONDS[min(attempt, len(RECONCILE_RETRY_SECONDS) - 1)]


def spec_from_request(request: SessionRequest, *, default_timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SessionSpec:
    """The session for a push the hooks spooled, with the settings the hook recorded for that repo."""
    settings = request.settings
    created = created_at_seconds(request.created_at) or time.time()
    return SessionSpec(
        id=request.id,
        remote_url=request.remote_url,
        branch=request.branch,
        tag=request.ref_name if request.ref_kind == "tag" else "",
        commit=request.new_sha,
        subject=request.subject,
        repo=request.repo,
        changed_paths=request.changed_paths,
        timeout_seconds=settings.timeout_seconds or default_timeout,
        reconcile=settings.reconcile if settings.reconcile is not None else True,
        monitor_types=settings.monitor_types or DEFAULT_MONITOR_TYPES,
        confirmed=request.confirmed,
        created_at=created,
        remote_name=request.remote_name,
        replaced=request.old_sha,
    )
