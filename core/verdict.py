"""The verdict on one Flux object, relative to the commit that was pushed.

kstatus (and so `flux reconcile`) calls an object failed only when Stalled=True, which leaves an ordinary build or
health-check failure "in progress" for minutes. We follow kustomize-controller's own test predicates instead
(`isReconcileFailure` in fluxcd/kustomize-controller internal/controller/suite_test.go@186fb3b2):

- Suspended: spec.suspend, whatever else the status says.
- Failed: Stalled=True; or Ready=False written for the current generation (the Ready condition's own
  observedGeneration) while Reconciling is absent or says ProgressingWithRetry. For a HelmRelease, Ready=False at
  the current generation is a failure whatever Reconciling says, because helm-controller keeps Reconciling=True
  ("Fulfilling prerequisites") while it retries a failure before any release action with backoff.
  A failure counts only once the controller has handled the latest reconcile request (isReconcileFailure's
  lastHandledReconcileAt check); until then it is Progressing.
- Waiting: DependencyNotReady, a source with no artifact yet (a HelmRelease's chart, a HelmChart's source, a
  Kustomization's "Source artifact not found"), or a GitRepository's missing include.
- Progressing: Reconciling=True (reason Progressing), Ready=Unknown, or a Ready condition written for an older
  generation. A Helm install or upgrade whose failure helm-controller counted while remediation retries remain is
  Progressing too: it retries at once, and the message says "upgrade failed, retry 1 of 3: <error>".
- Ready: only at the target commit. Ready at an older revision is Pending for this push, and so is a failure at an
  older revision: the pushed commit has not been tried yet, and may well be the fix. A Kustomization's attempt is
  at the revision its Reconciling message names, which kustomize-controller writes before lastAttemptedRevision.
  A source whose stored artifact holds the pushed commit is Ready for the push while it fetches again, and when a
  later fetch fails: source-controller keeps the artifact, and the push needs nothing more of it.

status.observedGeneration is not "what the controller has seen": Flux advances it only on success or on a terminal
stall (kustomize-controller finalizeStatus; source-controller ComputeReconcileResult; helm-controller only with no
error and no requeue; new objects start at -1). So it never decides a verdict while a Ready condition carries its
own observedGeneration.

Some objects carry no trace of the commit (a HelmRelease whose chart comes from a HelmRepository or an
OCIRepository, a Kustomization of an OCI artifact). For those the verdict can only say whether the object is
healthy at its current generation; `Verdict.target_matched` is then None, and the session decides what that means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from fluxmon.core.objects import SOURCE_KINDS, Condition, FluxObject
from fluxmon.core.revision import parse_revision, revision_matches, short_revision, short_sha

PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
DEPENDENCY_NOT_READY = "DependencyNotReady"
ARTIFACT_FAILED = "ArtifactFailed"

WAIT_REASONS = frozenset({DEPENDENCY_NOT_READY, "SourceNotReady", "NoSourceArtifact"})
"""Ready=False reasons that wait on another object rather than fail: a dependsOn; a HelmRelease's chart source that
is not ready (helm-controller `isSourceReady`, internal/controller/helmrelease_controller.go@0f61a860, requeued at
the dependency interval, not retried with backoff); a HelmChart whose source has no artifact yet
(source-controller internal/controller/helmchart_controller.go@39b711b1, ResultRequeue)."""

HEALTH_CHECK_CANCELED = "HealthCheckCanceled"
"""Written when a new reconcile request (often the push itself, through its source) cancels running health checks;
the controller requeues at once, so nothing has failed (fluxcd/pkg apis/meta/conditions.go@e2cfd1a2;
kustomize-controller internal/controller/kustomization_controller.go@186fb3b2)."""

ARTIFACT_GONE = "Source not ready: artifact not found"
"""helm-controller's ArtifactFailed message when the chart artifact vanished between lookup and download; it waits
(errWaitForDependency) instead of failing (internal/controller/helmrelease_controller.go@0f61a860)."""

HELM_PREREQUISITE_FAILURES = frozenset(
    {
        ARTIFACT_FAILED,
        "ValuesError",
        "ChartMutateError",
        "RESTClientError",
        "ResourceManagerError",
        "FactoryError",
        "StateError",
        "InitFailed",
        "GetLastReleaseFailed",
    }
)
"""Ready=False reasons helm-controller writes before any release action: "could not get Source object" or "Could
not load chart" (ArtifactFailed), a values composition error such as a missing Secret or ConfigMap (ValuesError),
a missing kubeconfig Secret (RESTClientError), and the like. It keeps Reconciling=True, reason Progressing, message
"Fulfilling prerequisites", and retries with backoff (fluxcd/helm-controller
internal/controller/helmrelease_controller.go@0f61a860 reconcileRelease; StateError in
internal/reconcile/atomic_release.go@0f61a860). InitFailed and GetLastReleaseFailed are the v2beta1 API's
(api/v2beta1/condition_types.go)."""

SOURCE_WITHOUT_ARTIFACT = ("Source artifact not found", "Source is not ready")
"""How a Kustomization's ArtifactFailed message begins when its source has no artifact (yet): kustomize-controller
then requeues at the dependency interval and logs at info level, as for dependsOn, because the source is what is
failing or still fetching (internal/controller/kustomization_controller.go@186fb3b2 Reconcile). Any other
ArtifactFailed (spec.path missing from the commit, a download that failed) is the Kustomization's own failure."""

_ATTEMPT_IN_RECONCILING = re.compile(r"\bfor revision (?P<revision>\S+) with a timeout of\b")
"""kustomize-controller's Reconciling messages name the revision being tried ("Fetching manifests for revision
<rev> with a timeout of 4m30s", then "Building manifests ...", "Detecting drift ...", "Running health checks ...");
finalizeStatus keeps the message when it turns the reason to ProgressingWithRetry (kustomization_controller.go)."""

REMEDIATION_FAILURES = frozenset({"RollbackFailed", "UninstallFailed", "ReconcileError"})
"""Ready reasons of a HelmRelease whose remediation (or another non-release action) failed: helm-controller returns
the error and retries it with backoff, it does not retry the release at once (internal/reconcile/
atomic_release.go@0f61a860 Reconcile, where a failed action with Ready=True becomes ReconcileError)."""

RETRY_ON_FAILURE = "RetryOnFailure"
"""spec.install/upgrade.strategy.name that retries after an interval instead of remediating at once."""


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
    retrying: bool = False
    """A Helm install or upgrade failed and helm-controller retries it at once: Progressing, yet the failure is
    news the user must see (with its hint) before the retries are spent."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _CommitTrace:
    """The revisions of an object that can name a commit: what it applied, and what it last tried."""

    applied: str
    attempted: str


def verdict(obj: FluxObject, target: str | None = None, *, chart: FluxObject | None = None) -> Verdict:
    """Judge `obj` against the pushed commit `target`, or, with no target, on its own latest revision.

    `chart` is the HelmChart a HelmRelease's spec.chartRef names, where the caller has it: only that chart's own
    spec.sourceRef says whether the `+<12 hex>` in the release's chart version is a commit.
    """
    revision = display_revision(obj)
    attempted = _attempted_revision(obj)
    ready = obj.condition("Ready")
    since = ready.last_transition_time if ready else ""

    def judged(
        phase: Phase,
        reason: str,
        message: str,
        *,
        matched: bool | None = None,
        failed: bool = False,
        retrying: bool = False,
    ) -> Verdict:
        # A failure belongs to the revision that was tried, which is newer than the one last applied.
        failed_attempt = (failed or phase in (Phase.FAILED, Phase.PENDING)) and attempted
        return Verdict(
            phase=phase,
            reason=reason,
            message=message,
            revision=attempted if failed_attempt else revision,
            transitioned_at=since,
            target_matched=matched,
            retrying=retrying,
        )

    # Suspension overrides everything: a suspended object will not move, whatever its status says.
    if obj.suspended:
        return judged(Phase.SUSPENDED, "Suspended", "reconciliation is suspended (spec.suspend: true)")

    # Stalled first, as isReconcileFailure does: the controller will not retry without a spec change, so it fails
    # every push. Ready's message usually holds the concrete error; Stalled's only says that retries ran out.
    stalled = _current(obj, obj.condition("Stalled"))
    if stalled and stalled.status == "True":
        detail = _failure(obj).message if ready and ready.status == "False" else ""
        if detail == stalled.message:
            detail = ""
        message = f"{stalled.message}: {detail}" if stalled.message and detail else stalled.message or detail
        return judged(Phase.FAILED, stalled.reason or "Stalled", message)

    reconciling = _current(obj, obj.condition("Reconciling"))
    if ready is None:
        if reconciling and reconciling.status == "True":
            return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", reconciling.message)
        return judged(Phase.UNKNOWN, "NoStatus", "the controller has not reported a Ready condition yet")
    if _current(obj, ready) is None:
        # Ready speaks of an older spec (often changed by a parent applying the pushed commit): the controller has
        # not acted on the new one yet, so even Ready=True no longer counts.
        return judged(
            Phase.PROGRESSING,
            "NewGeneration",
            f"waiting for the controller to act on generation {obj.generation} "
            f"(Ready was written for generation {_generation_of(obj, ready)})",
        )

    trace = _commit_trace(obj, chart) if target else None
    matched = revision_matches(trace.applied, target) if trace and target else None
    if ready.status != "True" and matched and obj.kind in SOURCE_KINDS:
        # source-controller keeps its stored artifact while it fetches again and when a later fetch fails (a blip at
        # the next interval, while the Kustomizations still apply the commit): the artifact holds the pushed commit,
        # which is all this push needs of the source. Stalled was judged above.
        return judged(Phase.READY, ready.reason, f"holds the pushed commit; since then: {ready.message}", matched=True)
    if ready.status == "True":
        if trace is None or matched:
            return judged(Phase.READY, ready.reason, ready.message, matched=matched)
        if reconciling and reconciling.status == "True":
            return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", reconciling.message, matched=False)
        applied = short_revision(trace.applied) or "nothing yet"
        return judged(
            Phase.PENDING,
            "NotAtTarget",
            f"ready at {applied}, not yet at the pushed commit {short_sha(target or '')}",
            matched=False,
        )

    if ready.status != "False":
        return judged(Phase.PROGRESSING, ready.reason or "Progressing", ready.message, matched=matched)

    if _waits(obj, ready):
        return judged(Phase.WAITING, ready.reason, ready.message, matched=matched)
    if ready.reason == HEALTH_CHECK_CANCELED or (
        obj.kind == "HelmRelease" and ready.reason == ARTIFACT_FAILED and ready.message.startswith(ARTIFACT_GONE)
    ):
        # Health checks cancelled by a newer request, or a chart artifact replaced between lookup and download: the
        # controller starts again at once.
        return judged(Phase.PROGRESSING, ready.reason, ready.message, matched=matched)
    if (
        reconciling
        and reconciling.status == "True"
        and reconciling.reason != PROGRESSING_WITH_RETRY
        and obj.kind != "HelmRelease"
    ):
        return judged(Phase.PROGRESSING, reconciling.reason or "Progressing", ready.message, matched=matched)

    # The attempt failed at the current generation. A HelmRelease that failed before any release action failed on
    # its current spec (values, chart, Secret), whatever chart revision it last attempted.
    before_release = obj.kind == "HelmRelease" and ready.reason in HELM_PREREQUISITE_FAILURES
    failure = _failure(obj)
    if (
        target
        and trace is not None
        and obj.kind in ("Kustomization", "HelmRelease")
        and not before_release
        and not revision_matches(trace.attempted, target)
    ):
        # The attempt was at an older commit (or at none: the source object is missing, perhaps created by this
        # very push): the pushed commit has not been tried.
        tried = f"the last attempt, at {short_revision(trace.attempted)}," if trace.attempted else "the last attempt"
        return judged(
            Phase.PENDING,
            failure.reason,
            f"{tried} failed; the pushed commit has not been tried yet: {failure.message}",
            matched=False,
        )
    if obj.requested_reconcile_at and obj.requested_reconcile_at != obj.last_handled_reconcile_at:
        # isReconcileFailure counts a failure only once the controller has handled the latest reconcile request
        # (often fluxmon's own, sent for this push): until then the status speaks of an earlier attempt.
        return judged(
            Phase.PROGRESSING,
            failure.reason,
            f"a reconcile was requested and has not been handled yet; the last attempt failed: {failure.message}",
            matched=matched,
            failed=True,
        )
    if obj.kind == "HelmRelease" and not before_release and (retry := _helm_retry(obj, reconciling)):
        return judged(
            Phase.PROGRESSING,
            failure.reason,
            f"{retry}: {failure.message}",
            matched=matched,
            failed=True,
            retrying=True,
        )
    return judged(Phase.FAILED, failure.reason or "Failed", failure.message, matched=matched)


def display_revision(obj: FluxObject) -> str:
    """The revision to show for `obj`: what it applied, or what it last tried when it has applied nothing."""
    if obj.kind == "HelmRelease":
        return obj.chart_version or obj.last_applied_revision or obj.last_attempted_revision
    if obj.kind == "Kustomization":
        return obj.last_applied_revision or obj.last_attempted_revision
    return obj.artifact_revision


def _commit_trace(obj: FluxObject, chart: FluxObject | None = None) -> _CommitTrace | None:
    """The revisions that can name the pushed commit, or None when this object carries no trace of commits."""
    kind = obj.kind
    if kind == "GitRepository":
        return _CommitTrace(applied=obj.artifact_revision, attempted="")
    if kind == "OCIRepository":
        # An OCI artifact pushed by CI may record the git revision it was built from.
        return _CommitTrace(applied=obj.origin_revision, attempted="") if obj.origin_revision else None
    if kind == "HelmChart":
        # Built from a GitRepository with reconcileStrategy Revision, the version ends in the first 12 hex of the
        # commit; from a Bucket, the same-looking suffix is a digest, and from a HelmRepository there is none.
        if _chart_built_from_git(obj) and _has_helm_suffix(obj.artifact_revision):
            return _CommitTrace(applied=obj.artifact_revision, attempted="")
        return None
    if kind == "Kustomization":
        # Built from an OCI artifact or a bucket, lastAppliedRevision is a content digest, not a commit.
        if obj.source_ref is not None and obj.source_ref.kind != "GitRepository":
            return None
        return _CommitTrace(applied=obj.last_applied_revision, attempted=_attempted_revision(obj))
    if kind == "HelmRelease":
        # The chart's source kind decides, never the shape of the version alone: a chartRef to an OCIRepository
        # or a HelmChart from a Bucket also gives `<version>+<12 hex>`, where the hex is a digest.
        applied = obj.chart_version or obj.last_applied_revision
        from_git = _chart_built_from_git(obj) or (
            obj.source_ref is not None
            and obj.source_ref.kind == "HelmChart"
            and chart is not None
            and chart.ref == obj.source_ref
            and _chart_built_from_git(chart)
        )
        if from_git and (_has_helm_suffix(applied) or _has_helm_suffix(obj.last_attempted_revision)):
            return _CommitTrace(applied=applied, attempted=obj.last_attempted_revision)
        return None
    return None  # Bucket and HelmRepository revisions are content digests.


def _attempted_revision(obj: FluxObject) -> str:
    """The revision of the last attempt. kustomize-controller records status.lastAttemptedRevision only once it has
    downloaded the artifact and found spec.path, so a path missing from the pushed commit leaves the previous
    revision there; the Reconciling message names the revision being tried from the start."""
    if obj.kind == "Kustomization":
        reconciling = _current(obj, obj.condition("Reconciling"))
        match = _ATTEMPT_IN_RECONCILING.search(reconciling.message) if reconciling else None
        if reconciling and reconciling.status == "True" and match:
            return match["revision"]
    return obj.last_attempted_revision


def _waits(obj: FluxObject, ready: Condition) -> bool:
    """Whether a Ready=False condition waits on another object instead of failing."""
    if ready.reason in WAIT_REASONS:
        return True
    if obj.kind == "Kustomization" and ready.reason == ARTIFACT_FAILED:
        return ready.message.startswith(SOURCE_WITHOUT_ARTIFACT)
    if obj.kind == "GitRepository":
        # An included GitRepository that is missing or has no artifact: source-controller returns a serror.Waiting
        # and requeues at the dependency interval; IncludeUnavailable's reason becomes Ready's
        # (internal/controller/gitrepository_controller.go@39b711b1 fetchIncludes).
        include = _current(obj, obj.condition("IncludeUnavailable"))
        return include is not None and include.status == "True"
    return False


def _has_helm_suffix(revision: str) -> bool:
    return parse_revision(revision).truncated


def _chart_built_from_git(obj: FluxObject) -> bool:
    """Whether the chart comes straight from a GitRepository: a HelmChart's spec.sourceRef, or a HelmRelease's
    spec.chart.spec.sourceRef. A HelmRelease's spec.chartRef names an OCIRepository (digest) or a HelmChart, whose
    own source this one object cannot see: `verdict` takes that HelmChart from its caller."""
    return obj.source_ref is not None and obj.source_ref.kind == "GitRepository"


def _generation_of(obj: FluxObject, condition: Condition) -> int | None:
    """The generation a condition was written for: its own observedGeneration, else status.observedGeneration.

    flux2 reads an observedGeneration of 0 on a condition as "not set" (APIs that predate per-condition
    generations write none): fluxcd/flux2 cmd/flux/readiness.go@da2d22d3 `isObjectReady`.
    """
    return condition.observed_generation or obj.observed_generation


def _failure(obj: FluxObject) -> Condition:
    """The condition that holds the concrete error; for a HelmRelease after remediation, Ready only says that the
    rollback or uninstall succeeded, while Released (or TestSuccess) still holds the failure. A failure before any
    release action (a values error) is Ready's own, and the Released condition left by an earlier action is stale."""
    ready = obj.condition("Ready") or Condition(type="Ready", status="False")
    if obj.kind == "HelmRelease" and not (ready.status == "False" and ready.reason in HELM_PREREQUISITE_FAILURES):
        for condition_type in ("Released", "TestSuccess"):
            condition = obj.condition(condition_type)
            if condition is not None and condition.status == "False" and condition.message:
                return condition
    return ready


def _helm_retry(obj: FluxObject, reconciling: Condition | None) -> str:
    """`upgrade failed, retry 1 of 3` while helm-controller will retry a failed install or upgrade at once, else "".

    After a failure that stored a release, helm-controller counts it (status.installFailures or upgradeFailures),
    remediates, and requeues at once while `RetriesExhausted` is false, that is while the count is at most
    spec.<action>.remediation.retries (default 0, negative = unlimited); once they are spent it writes
    Stalled=RetriesExceeded (fluxcd/helm-controller api/v2/helmrelease_types.go@0f61a860 `RetriesExhausted`,
    `GetFailureCount`; internal/reconcile/atomic_release.go@0f61a860 `Reconcile`, `actionForState`).

    Not a retry at once, so the failure stands as a Kustomization's does:
    - a failure helm-controller did not count: a chart that does not render stores no release, and the error is
      returned and retried with backoff (internal/reconcile/install.go and upgrade.go@0f61a860 `Reconcile`);
    - a failed remediation (RollbackFailed, UninstallFailed) or another action's error (ReconcileError);
    - a RetryOnFailure strategy, which retries after an interval and says "retrying after <interval>".
    """
    action = obj.last_release_action or _ACTION_BY_REASON.get(_failure(obj).reason, "")
    if action == "install":
        retries, failures, strategy = obj.install_retries, obj.install_failures, obj.install_strategy
    elif action == "upgrade":
        retries, failures, strategy = obj.upgrade_retries, obj.upgrade_failures, obj.upgrade_strategy
    else:
        return ""
    ready = obj.condition("Ready")
    interval_retry = reconciling is not None and reconciling.message.startswith("retrying after ")
    if (
        strategy == RETRY_ON_FAILURE
        or interval_retry
        or (ready is not None and ready.reason in REMEDIATION_FAILURES)
        or failures < 1
        or 0 <= retries < failures
    ):
        return ""
    return f"{action} failed, retry {failures} of {retries if retries > 0 else 'unlimited'}"


_ACTION_BY_REASON = {
    "InstallFailed": "install",
    "UninstallSucceeded": "install",
    "UpgradeFailed": "upgrade",
    "RollbackSucceeded": "upgrade",
}
"""The release action a failure belongs to, where status.lastAttemptedReleaseAction is missing (v2beta1): a failed
install is remediated by an uninstall, a failed upgrade by a rollback, and helm-controller's `summarize` then puts the
remediation's reason on Ready (internal/reconcile/release.go@0f61a860)."""


def _current(obj: FluxObject, condition: Condition | None) -> Condition | None:
    """The condition if it speaks of the object's current generation, else None.

    Every Flux v1 condition carries its own observedGeneration; older APIs only have status.observedGeneration;
    where neither exists, the condition is taken as current. A lagging status.observedGeneration never makes a
    condition stale when the condition has its own (kustomize-controller `isReconcileFailure`).
    """
    if condition is None:
        return None
    observed = _generation_of(obj, condition)
    if observed is None or obj.generation is None:
        return condition
    return condition if observed >= obj.generation else None
