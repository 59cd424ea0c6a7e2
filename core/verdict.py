"""The verdict on one Flux object, relative to the commit that was pushed.

kstatus (and so `flux reconcile`) calls an object failed only when Stalled=True, which leaves an ordinary build or
health-check failure "in progress" for minutes. We follow kustomize-controller's own test predicates instead:

- Failed: Stalled=True; or Ready=False at the current generation while Reconciling is absent or says
  ProgressingWithRetry (the controller has given up on this attempt and will retry later).
- Waiting: Ready=False with DependencyNotReady.
- Progressing: Reconciling=True (reason Progressing), Ready=Unknown, or a generation the controller has not
  observed yet.
- Suspended: spec.suspend, whatever else the status says.
- Ready: only at the target commit. Ready at an older revision is Pending for this push, and so is a failure at an
  older revision: the pushed commit has not been tried yet, and may well be the fix.

Some objects carry no trace of the commit (a HelmRelease whose chart comes from a HelmRepository, a Kustomization
of an OCI artifact). For those the verdict can only say whether the object is healthy at its current generation;
`Verdict.target_matched` is then None, and the session decides what that means.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fluxmon.core.objects import Condition, FluxObject
from fluxmon.core.revision import parse_revision, revision_matches, short_revision

PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
DEPENDENCY_NOT_READY = "DependencyNotReady"


class Phase(StrEnum):
    """Where an object stands, for this push."""

    PENDING = "Pending"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    READY = "Ready"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """What an object's status means; `target_matched` is None when no target was given or none can be traced."""

    phase: Phase
    reason: str
    message: str
    revision: str = ""
    transitioned_at: str = ""
    target_matched: bool | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class _CommitTrace:
    """The revisions of an object that can name a commit: what it applied, and what it last tried."""

    applied: str
    attempted: str


def verdict(obj: FluxObject, target: str | None = None) -> Verdict:
    """Judge `obj` against the pushed commit `target`, or, with no target, on its own latest revision."""
    revision = display_revision(obj)
    ready = obj.condition("Ready")
    since = ready.last_transition_time if ready else ""

    def judged(phase: Phase, reason: str, message: str, *, matched: bool | None = None) -> Verdict:
        # A failure belongs to the revision that was tried, which is newer than the one last applied.
        failed_attempt = phase in (Phase.FAILED, Phase.PENDING) and obj.last_attempted_revision
        return Verdict(
            phase=phase,
            reason=reason,
            message=message,
            revision=obj.last_attempted_revision if failed_attempt else revision,
            transitioned_at=since,
            target_matched=matched,
        )

    # Suspension overrides everything: a suspended object will not move, whatever its status says.
    if obj.suspended:
        return judged(Phase.SUSPENDED, "Suspended", "reconciliation is suspended (spec.suspend: true)")

    # A spec change the controller has not seen yet (often made by a parent applying the pushed commit) makes any
    # status stale, Ready included.
    observed = obj.observed_generation
    if observed is None and ready is not None:
        observed = ready.observed_generation
    if obj.generation is not None and observed is not None and observed < obj.generation:
        return judged(
            Phase.PROGRESSING,
            "NewGeneration",
            f"waiting for the controller to observe generation {obj.generation} (last observed {observed})",
        )

    reconciling = _current(obj, obj.condition("Reconciling"))
    stalled = _current(obj, obj.condition("Stalled"))
    if stalled and stalled.status == "True":
        # Stalled means the controller will not retry without a spec change, so it fails every push.
        # Ready's message usually holds the concrete error; Stalled's only says that retries ran out.
        detail = ready.message if ready and ready.status == "False" and ready.message != stalled.message else ""
        message = f"{stalled.message}: {detail}" if stalled.message and detail else stalled.message or detail
        return judged(Phase.FAILED, stalled.reason or "Stalled", message)

    trace = _commit_trace(obj) if target else None
    if ready is None:
        if reconciling and reconciling.status == "True":
            return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", reconciling.message)
        return judged(Phase.UNKNOWN, "NoStatus", "the controller has not reported a Ready condition yet")
    if _current(obj, ready) is None:
        return judged(Phase.PROGRESSING, ready.reason or "Progressing", ready.message)

    matched = revision_matches(trace.applied, target) if trace and target else None
    if ready.status == "True":
        if trace is None or matched:
            return judged(Phase.READY, ready.reason, ready.message, matched=matched)
        if reconciling and reconciling.status == "True":
            return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", reconciling.message, matched=False)
        applied = short_revision(trace.applied) or "nothing yet"
        return judged(
            Phase.PENDING,
            "NotAtTarget",
            f"ready at {applied}, not yet at the pushed commit {target[:8] if target else ''}",
            matched=False,
        )

    if ready.status == "False":
        if ready.reason == DEPENDENCY_NOT_READY:
            return judged(Phase.WAITING, ready.reason, ready.message, matched=matched)
        if reconciling and reconciling.status == "True" and reconciling.reason != PROGRESSING_WITH_RETRY:
            return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", ready.message, matched=matched)
        # The attempt failed. If it was at an older commit (or at none: the source had no artifact yet), the
        # pushed commit has not been tried.
        if (
            target
            and trace is not None
            and obj.kind in ("Kustomization", "HelmRelease")
            and not revision_matches(trace.attempted, target)
        ):
            tried = (
                f"the last attempt, at {short_revision(trace.attempted)}," if trace.attempted else "the last attempt"
            )
            return judged(
                Phase.PENDING,
                ready.reason,
                f"{tried} failed; the pushed commit has not been tried yet: {ready.message}",
                matched=False,
            )
        return judged(Phase.FAILED, ready.reason or "Failed", ready.message, matched=matched)

    return judged(Phase.PROGRESSING, ready.reason or "Progressing", ready.message, matched=matched)


def display_revision(obj: FluxObject) -> str:
    """The revision to show for `obj`: what it applied, or what it last tried when it has applied nothing."""
    if obj.kind == "HelmRelease":
        return obj.chart_version or obj.last_applied_revision or obj.last_attempted_revision
    if obj.kind == "Kustomization":
        return obj.last_applied_revision or obj.last_attempted_revision
    return obj.artifact_revision


def _commit_trace(obj: FluxObject) -> _CommitTrace | None:
    """The revisions that can name the pushed commit, or None when this object carries no trace of commits."""
    kind = obj.kind
    if kind == "GitRepository":
        return _CommitTrace(applied=obj.artifact_revision, attempted="")
    if kind == "OCIRepository":
        # An OCI artifact pushed by CI may record the git revision it was built from.
        return _CommitTrace(applied=obj.origin_revision, attempted="") if obj.origin_revision else None
    if kind == "HelmChart":
        return (
            _CommitTrace(applied=obj.artifact_revision, attempted="")
            if _has_helm_suffix(obj.artifact_revision)
            else None
        )
    if kind == "Kustomization":
        # Built from an OCI artifact or a bucket, lastAppliedRevision is a content digest, not a commit.
        if obj.source_ref is not None and obj.source_ref.kind != "GitRepository":
            return None
        return _CommitTrace(applied=obj.last_applied_revision, attempted=obj.last_attempted_revision)
    if kind == "HelmRelease":
        applied = obj.chart_version or obj.last_applied_revision
        if _has_helm_suffix(applied) or _has_helm_suffix(obj.last_attempted_revision):
            return _CommitTrace(applied=applied, attempted=obj.last_attempted_revision)
        return None
    return None  # Bucket and HelmRepository revisions are content digests.


def _has_helm_suffix(revision: str) -> bool:
    return parse_revision(revision).truncated


def _current(obj: FluxObject, condition: Condition | None) -> Condition | None:
    """The condition if it speaks of the object's current generation, else None.

    Every Flux v1 condition carries its own observedGeneration; older APIs only have status.observedGeneration;
    where neither exists, the condition is taken as current.
    """
    if condition is None:
        return None
    observed = condition.observed_generation
    if observed is None:
        observed = obj.observed_generation
    if observed is None or obj.generation is None:
        return condition
    return condition if observed >= obj.generation else None
