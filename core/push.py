"""One push across every cluster it is followed on: the per-cluster sessions, and the push's outcome from them.

A fleet is often one repository and several clusters, each with its own Flux on its own path or branch. The engine
follows each push on every configured context (one session per cluster, judged there alone); this module decides
what the push as a whole has come to, so that every front end says the same:

    failed        as soon as any cluster fails, naming it (the others are still followed, for the report)
    deployed      when every cluster that follows this remote and branch has applied the commit
    not followed  a cluster where no source follows it is shown, and not counted; the push is not deployed
                  anywhere (exit 4) only when no cluster follows it
    timed out     a cluster still on its way at the timeout (an unreachable one included) times the push out
    superseded    the next push to the branch took over (the same on every cluster: git decides it)

With one cluster (the default), the push's state and message are that cluster's, word for word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fluxmon.core.health import ClusterHealth
from fluxmon.core.informer import KindStatus
from fluxmon.core.objects import ObjectRef
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import short_sha
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.verdict import Phase

_FINAL_ORDER = (
    SessionState.SUPERSEDED,
    SessionState.CANCELLED,
    SessionState.TIMED_OUT,
    SessionState.SUCCEEDED,
)
"""Once every cluster that follows the push is final (and none failed), the first of these that one is in."""

NOT_READ_YET = "connecting"
"""A cluster's session before its first evaluation (`pending`)."""

_CLUSTER_WORDS = {
    SessionState.SUCCEEDED: "deployed",
    SessionState.FAILED: "failed",
    SessionState.TIMED_OUT: "timed out",
    SessionState.SUPERSEDED: "superseded",
    SessionState.CANCELLED: "cancelled",
    SessionState.NOT_DEPLOYED: "not followed",
    SessionState.RECONCILING: "progressing",
    SessionState.WAITING_FOR_SOURCE: "waiting for its source",
}
"""A cluster's state in the push's one-line summary ("main@1a2b3c4 deployed to dev · prod progressing")."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PushSnapshot:
    """A push at one moment, on every cluster it is followed on; immutable, so it can cross threads."""

    clusters: tuple[SessionSnapshot, ...]
    """One session per configured context, in the order they were configured."""
    state: SessionState
    message: str
    failed_on: str = ""
    """The context of the first cluster that failed ("" when none did)."""

    @property
    def first(self) -> SessionSnapshot:
        return self.clusters[0]

    @property
    def id(self) -> str:
        return self.first.id

    @property
    def commit(self) -> str:
        return self.first.commit

    @property
    def short_commit(self) -> str:
        return short_sha(self.commit)

    @property
    def branch(self) -> str:
        return self.first.branch

    @property
    def remote(self) -> str:
        return self.first.remote

    @property
    def subject(self) -> str:
        return self.first.subject

    @property
    def repo(self) -> str:
        return self.first.repo

    @property
    def confirmed(self) -> bool:
        return self.first.confirmed

    @property
    def started_at(self) -> float:
        return self.first.started_at

    @property
    def updated_at(self) -> float:
        return max(cluster.updated_at for cluster in self.clusters)

    @property
    def ended_at(self) -> float | None:
        """When the push's outcome was decided (a failure ends it at once, while other clusters go on)."""
        if not self.state.final:
            return None
        if self.state is SessionState.FAILED:
            failing = self._failing
            return (failing.ended_at or failing.updated_at) if failing is not None else self.updated_at
        return max(cluster.ended_at or cluster.updated_at for cluster in self.clusters)

    @property
    def elapsed(self) -> float:
        return (self.ended_at or self.updated_at) - self.started_at

    @property
    def settled(self) -> bool:
        """Every cluster's session is final: the report is complete (a failed push may still be settling)."""
        return all(cluster.state.final for cluster in self.clusters)

    @property
    def several(self) -> bool:
        """Followed on more than one cluster: front ends name the clusters (with one, they look as they always did)."""
        return len(self.clusters) > 1

    @property
    def failed(self) -> ObjectRef | None:
        """The object that failed first, on the cluster that failed first."""
        failing = self._failing
        return failing.failed if failing is not None else None

    @property
    def _failing(self) -> SessionSnapshot | None:
        """The cluster the push failed on (None when it did not fail)."""
        if self.state is not SessionState.FAILED:
            return None
        return next((c for c in self.clusters if c.state is SessionState.FAILED and c.context == self.failed_on), None)

    @property
    def health(self) -> tuple[ClusterHealth, ...]:
        return tuple(cluster.cluster for cluster in self.clusters)

    def cluster(self, context: str) -> SessionSnapshot | None:
        return next((cluster for cluster in self.clusters if cluster.context == context), None)

    def count(self, *phases: Phase) -> int:
        return sum(cluster.count(*phases) for cluster in self.clusters)

    def summary(self) -> str:
        """Where the push stands, cluster by cluster, in one line: "deployed to dev, staging · prod progressing"."""
        return cluster_summary(self.clusters)


def combine(clusters: Sequence[SessionSnapshot], *, failed_on: str = "") -> PushSnapshot:
    """The push's outcome from its sessions on each cluster (the rules are in the module docstring).

    `failed_on`: the cluster the push was already said to fail on, which stays the one named (a failure announced
    on dev must not turn into one on prod because prod's failed pass began a moment earlier).
    """
    if not clusters:
        raise ValueError("a push is followed on one cluster at least")
    if len(clusters) == 1:
        only = clusters[0]
        return PushSnapshot(
            clusters=tuple(clusters),
            state=only.state,
            message=only.message,
            failed_on=only.context if only.state is SessionState.FAILED else "",
        )
    failed = [c for c in clusters if c.state is SessionState.FAILED]
    if failed:
        named = [c for c in failed if c.context == failed_on]
        first = named[0] if named else min(failed, key=lambda c: c.ended_at or c.updated_at)
        return PushSnapshot(
            clusters=tuple(clusters),
            state=SessionState.FAILED,
            message=f"failed on {first.context}: {first.message}",
            failed_on=first.context,
        )
    following = [c for c in clusters if c.state is not SessionState.NOT_DEPLOYED]
    summary = cluster_summary(clusters)
    if not following:
        return PushSnapshot(
            clusters=tuple(clusters),
            state=SessionState.NOT_DEPLOYED,
            message=f"no cluster follows it: {'; '.join(f'{c.context}: {c.message}' for c in clusters)}",
        )
    on_the_way = [c.state for c in following if not c.state.final]
    if on_the_way:
        state = SessionState.RECONCILING if SessionState.RECONCILING in on_the_way else SessionState.WAITING_FOR_SOURCE
        return PushSnapshot(clusters=tuple(clusters), state=state, message=summary)
    ended = {c.state for c in following}
    state = next(s for s in _FINAL_ORDER if s in ended)
    return PushSnapshot(clusters=tuple(clusters), state=state, message=summary)


def cluster_summary(clusters: Iterable[SessionSnapshot]) -> str:
    """Clusters in the same state named together, in the order first seen: "deployed to dev, staging · prod
    progressing · qa not followed". An unreachable cluster still on its way says so."""
    groups: dict[str, list[str]] = {}
    for cluster in clusters:
        word = _CLUSTER_WORDS[cluster.state]
        unreachable = any(k.status is KindStatus.UNREACHABLE for k in cluster.cluster.kinds)
        if cluster.state is SessionState.WAITING_FOR_SOURCE and cluster.message == NOT_READ_YET:
            word = "not read yet"
        elif unreachable and cluster.state in (SessionState.WAITING_FOR_SOURCE, SessionState.RECONCILING):
            word = "unreachable"
        elif unreachable and cluster.state is SessionState.TIMED_OUT:
            word = "unreachable (timed out)"
        groups.setdefault(word, []).append(cluster.context or "the cluster")
    parts = []
    for word, names in groups.items():
        if word in ("deployed", "failed"):
            parts.append(f"{word} {'to' if word == 'deployed' else 'on'} {', '.join(names)}")
        else:
            parts.append(f"{', '.join(names)} {word}")
    return " · ".join(parts)


def pending(spec: SessionSpec, context: str) -> SessionSnapshot:
    """A cluster's session before its first evaluation: waiting, so that the push is not judged without it."""
    return SessionSnapshot(
        id=spec.id,
        state=SessionState.WAITING_FOR_SOURCE,
        message=NOT_READ_YET,
        commit=spec.commit,
        branch=spec.branch or spec.tag,
        remote=redact_url(spec.remote_url),
        subject=spec.subject,
        repo=spec.repo,
        started_at=spec.created_at,
        updated_at=spec.created_at,
        ended_at=None,
        resources=(),
        confirmed=spec.confirmed,
        context=context,
    )
