"""The verdict engine: every phase, on status blocks in the shape the Flux controllers write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.documents import iter_objects
from fluxmon.core.objects import parse_flux_object
from fluxmon.core.verdict import Phase, Verdict, verdict
from tests.flux_bodies import SHA_NEW, SHA_OLD, condition, git_repository, helm_release, kustomization, ready

GIT_CHART = {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"}
"""A chart built from the fleet repository, the one case where a `+<12 hex>` chart version names a commit."""
NEW = f"main@sha1:{SHA_NEW}"
OLD = f"main@sha1:{SHA_OLD}"
FIXTURES = Path(__file__).parent / "fixtures" / "flux-examples.yaml"


def judge(body: dict[str, Any], target: str | None = SHA_NEW) -> Verdict:
    return verdict(parse_flux_object(body), target)


def fixture_objects() -> dict[str, Any]:
    text = FIXTURES.read_text(encoding="utf-8")
    return {body["metadata"]["name"]: body for body in iter_objects(text, source=str(FIXTURES))}


@pytest.mark.parametrize(
    ("name", "phase", "reason"),
    [
        ("fleet", Phase.READY, "Succeeded"),
        ("team-a", Phase.FAILED, "AuthenticationFailed"),
        ("infrastructure", Phase.READY, "ReconciliationSucceeded"),
        ("apps", Phase.FAILED, "BuildFailed"),
        ("cert-manager", Phase.READY, "InstallSucceeded"),
        ("redis", Phase.FAILED, "RetriesExceeded"),
    ],
)
def test_shared_examples_against_the_pushed_commit(name: str, phase: Phase, reason: str) -> None:
    result = judge(fixture_objects()[name])
    assert (result.phase, result.reason) == (phase, reason)


def test_failure_reports_the_attempted_revision_and_the_error() -> None:
    result = judge(fixture_objects()["apps"])
    assert result.revision == NEW
    assert 'mapping key "image" already defined' in result.message


def test_stalled_helm_release_keeps_the_concrete_error() -> None:
    result = judge(fixture_objects()["redis"])
    assert result.message.startswith("Failed to install after 3 attempt(s): Helm install failed")
    assert "context deadline exceeded" in result.message


def test_ready_at_the_pushed_commit_is_ready() -> None:
    result = judge(kustomization("apps", applied=NEW, conditions=ready(NEW)))
    assert result.phase is Phase.READY
    assert result.target_matched is True
    assert result.transitioned_at == "2026-10-02T09:14:03Z"


def test_ready_at_an_older_revision_is_pending_for_this_push() -> None:
    result = judge(kustomization("apps", applied=OLD, conditions=ready(OLD)))
    assert result.phase is Phase.PENDING
    assert result.target_matched is False
    assert "main@sha1:0f9e8d7c" in result.message


def test_without_a_target_ready_means_healthy_at_its_own_revision() -> None:
    result = judge(kustomization("apps", applied=OLD, conditions=ready(OLD)), target=None)
    assert result.phase is Phase.READY
    assert result.target_matched is None


def build_failed(revision: str) -> dict[str, Any]:
    return kustomization(
        "apps",
        applied=OLD,
        attempted=revision,
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", f"Building manifests for revision {revision}"),
            condition("Ready", "False", "BuildFailed", "kustomize build failed: accumulating resources"),
        ],
    )


def test_failure_at_the_pushed_commit_fails_fast() -> None:
    # Reconciling=ProgressingWithRetry means this attempt is over; kstatus would still call it in progress.
    result = judge(build_failed(NEW))
    assert (result.phase, result.reason) == (Phase.FAILED, "BuildFailed")


def test_failure_at_an_older_revision_is_pending_for_this_push() -> None:
    # The pushed commit may be the fix: it must not be reported broken before Flux has tried it.
    result = judge(build_failed(OLD))
    assert result.phase is Phase.PENDING
    assert result.reason == "BuildFailed"
    assert "has not been tried yet" in result.message
    assert judge(build_failed(OLD), target=None).phase is Phase.FAILED


def test_ready_false_without_reconciling_is_a_failure() -> None:
    body = kustomization(
        "apps",
        attempted=NEW,
        conditions=[condition("Ready", "False", "HealthCheckFailed", "timeout waiting for: [Deployment/apps/web]")],
    )
    assert judge(body).phase is Phase.FAILED


def test_ready_false_while_still_progressing_is_progressing() -> None:
    body = kustomization(
        "apps",
        attempted=NEW,
        conditions=[
            condition("Reconciling", "True", "Progressing", "Health check in progress"),
            condition("Ready", "False", "HealthCheckFailed", "previous attempt failed"),
        ],
    )
    assert judge(body).phase is Phase.PROGRESSING


def test_ready_unknown_is_progressing() -> None:
    body = kustomization(
        "apps",
        applied=OLD,
        conditions=[
            condition("Reconciling", "True", "Progressing", f"Building manifests for revision {NEW}"),
            condition("Ready", "Unknown", "Progressing", "Reconciliation in progress"),
        ],
    )
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.PROGRESSING, "Progressing")


def test_ready_at_an_old_revision_while_reconciling_is_progressing() -> None:
    conditions = [*ready(OLD), condition("Reconciling", "True", "Progressing", "fetching")]
    assert judge(kustomization("apps", applied=OLD, conditions=conditions)).phase is Phase.PROGRESSING


def test_dependency_not_ready_is_waiting() -> None:
    body = kustomization(
        "apps",
        applied=OLD,
        conditions=[
            condition("Ready", "False", "DependencyNotReady", "dependency 'flux-system/infrastructure' is not ready")
        ],
    )
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.WAITING, "DependencyNotReady")


def test_an_unobserved_generation_is_progressing_even_if_ready() -> None:
    # A parent applying the pushed commit often changes a child's spec: the old Ready no longer counts.
    body = kustomization("apps", applied=NEW, conditions=ready(NEW, generation=1), generation=2, observed=1)
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.PROGRESSING, "NewGeneration")


def test_a_stale_ready_condition_is_progressing() -> None:
    # status.observedGeneration caught up, but the Ready condition still speaks of generation 1.
    body = kustomization("apps", applied=NEW, conditions=ready(NEW, generation=1), generation=2, observed=2)
    assert judge(body).phase is Phase.PROGRESSING


def test_condition_generation_is_the_fallback_when_status_has_none() -> None:
    body = kustomization("apps", applied=NEW, conditions=ready(NEW, generation=1), generation=3, observed=None)
    assert judge(body).reason == "NewGeneration"


def test_conditions_without_any_generation_are_taken_as_current() -> None:
    # Older APIs (v1beta1) wrote no observedGeneration at all.
    body = kustomization(
        "apps",
        attempted=NEW,
        observed=None,
        generation=4,
        conditions=[condition("Ready", "False", "BuildFailed", "kustomize build failed", generation=None)],
    )
    assert judge(body).phase is Phase.FAILED


def test_suspension_overrides_everything() -> None:
    body = build_failed(NEW)
    body["spec"]["suspend"] = True
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.SUSPENDED, "Suspended")


def test_stalled_fails_even_at_an_older_revision() -> None:
    body = kustomization(
        "apps",
        applied=OLD,
        attempted=OLD,
        conditions=[
            condition("Stalled", "True", "InvalidPath", "spec.path './nope' not found"),
            condition("Ready", "False", "InvalidPath", "spec.path './nope' not found"),
        ],
    )
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.FAILED, "InvalidPath")
    assert result.message == "spec.path './nope' not found"


def test_no_status_is_unknown() -> None:
    result = judge(kustomization("apps", conditions=[], observed=None))
    assert (result.phase, result.reason) == (Phase.UNKNOWN, "NoStatus")


def test_source_fetch_failure_fails_the_push() -> None:
    body = git_repository(
        revision=OLD,
        conditions=[
            condition(
                "Ready",
                "False",
                "GitOperationFailed",
                "failed to checkout: unable to clone: connection refused",
            ),
            condition("FetchFailed", "True", "GitOperationFailed", "failed to checkout"),
        ],
    )
    assert judge(body).phase is Phase.FAILED


def test_source_at_the_pushed_commit_is_ready_and_older_is_pending() -> None:
    assert judge(git_repository(revision=NEW)).phase is Phase.READY
    assert judge(git_repository(revision=OLD)).phase is Phase.PENDING


@pytest.mark.parametrize("api_version", ["helm.toolkit.fluxcd.io/v2", "helm.toolkit.fluxcd.io/v2beta2"])
def test_helm_release_from_git_matches_the_chart_version_suffix(api_version: str) -> None:
    succeeded = [condition("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded")]
    at_new, at_old = (
        helm_release(
            "web",
            api_version=api_version,
            chart_source=GIT_CHART,
            chart_version=f"1.2.0+{sha[:12]}",
            conditions=succeeded,
        )
        for sha in (SHA_NEW, SHA_OLD)
    )
    assert judge(at_new).phase is Phase.READY
    assert judge(at_new).target_matched is True
    assert judge(at_old).phase is Phase.PENDING


def test_helm_release_v2beta1_uses_last_applied_revision() -> None:
    body = helm_release(
        "web",
        api_version="helm.toolkit.fluxcd.io/v2beta1",
        chart_source=GIT_CHART,
        conditions=[condition("Ready", "True", "ReconciliationSucceeded", "Release reconciliation succeeded")],
    )
    body["status"]["lastAppliedRevision"] = f"1.2.0+{SHA_NEW[:12]}"
    assert judge(body).target_matched is True


@pytest.mark.parametrize(
    ("reason", "attempted", "phase"),
    [
        ("UpgradeFailed", SHA_NEW, Phase.FAILED),
        ("InstallFailed", SHA_NEW, Phase.FAILED),
        ("TestFailed", SHA_NEW, Phase.FAILED),
        ("UpgradeFailed", SHA_OLD, Phase.PENDING),
    ],
)
def test_helm_release_failures_are_judged_relative_to_the_push(reason: str, attempted: str, phase: Phase) -> None:
    body = helm_release(
        "web",
        chart_source=GIT_CHART,
        chart_version=f"1.2.0+{SHA_OLD[:12]}",
        attempted=f"1.2.0+{attempted[:12]}",
        conditions=[condition("Ready", "False", reason, f"Helm {reason}: context deadline exceeded")],
    )
    assert judge(body).phase is phase


def test_helm_release_from_a_helm_repository_carries_no_trace_of_the_commit() -> None:
    body = helm_release(
        "redis",
        chart_version="20.4.0",
        conditions=[condition("Ready", "True", "InstallSucceeded", "installed")],
    )
    result = judge(body)
    assert result.phase is Phase.READY
    assert result.target_matched is None


def test_kustomization_of_an_oci_artifact_carries_no_trace() -> None:
    digest = "latest@sha256:" + "a" * 64
    body = kustomization("apps", source_kind="OCIRepository", applied=digest, conditions=ready(digest))
    assert judge(body).target_matched is None
    assert judge(body).phase is Phase.READY


def test_oci_repository_with_an_origin_revision_is_matched_on_it() -> None:
    body: dict[str, Any] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "manifests", "namespace": "flux-system", "generation": 1},
        "spec": {"url": "oci://ghcr.io/acme/manifests"},
        "status": {
            "observedGeneration": 1,
            "artifact": {
                "revision": "latest@sha256:" + "b" * 64,
                "metadata": {
                    "org.opencontainers.image.source": "https://github.com/acme/fleet",
                    "org.opencontainers.image.revision": NEW,
                },
            },
            "conditions": [condition("Ready", "True", "Succeeded", "stored artifact")],
        },
    }
    assert judge(body).target_matched is True
    body["status"]["artifact"]["metadata"]["org.opencontainers.image.revision"] = OLD
    assert judge(body).phase is Phase.PENDING


@pytest.mark.parametrize("kind", ["HelmRepository", "Bucket"])
def test_sources_without_commits_are_judged_on_health(kind: str) -> None:
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": kind,
        "metadata": {"name": "charts", "namespace": "flux-system", "generation": 2},
        "status": {
            "observedGeneration": 2,
            "artifact": {"revision": "sha256:" + "c" * 64},
            "conditions": [condition("Ready", "True", "Succeeded", "stored artifact", generation=2)],
        },
    }
    result = judge(body)
    assert (result.phase, result.target_matched) == (Phase.READY, None)


def test_helm_chart_built_from_git_is_matched_on_its_suffix() -> None:
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "apps-web", "namespace": "flux-system", "generation": 1},
        "spec": {"chart": "./charts/web", "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
        "status": {
            "observedGeneration": 1,
            "artifact": {"revision": f"6.0.3+{SHA_NEW[:12]}"},
            "conditions": [condition("Ready", "True", "ChartPackageSucceeded", "packaged 'web' chart")],
        },
    }
    assert judge(body).target_matched is True


def test_verdict_covers_every_phase() -> None:
    # Guards against a phase being added without a rule that can produce it.
    produced = {
        judge(kustomization("a", applied=OLD, conditions=ready(OLD))).phase,
        judge(kustomization("a", applied=NEW, conditions=ready(NEW))).phase,
        judge(build_failed(NEW)).phase,
        judge(kustomization("a", conditions=[condition("Ready", "Unknown", "Progressing")])).phase,
        judge(kustomization("a", conditions=[condition("Ready", "False", "DependencyNotReady")])).phase,
        judge(kustomization("a", suspend=True)).phase,
        judge(kustomization("a", observed=None)).phase,
    }
    assert produced == set(Phase)


def test_a_failure_before_any_attempt_is_pending_for_this_push() -> None:
    # A fresh bootstrap: the source has no artifact yet, so the Kustomization has tried no revision at all.
    body = kustomization(
        "flux-system",
        conditions=[condition("Ready", "False", "ArtifactFailed", "Source artifact not found, retrying in 30s")],
    )
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.PENDING, "ArtifactFailed")
    assert judge(body, target=None).phase is Phase.FAILED


# status.observedGeneration lags on failure: Flux advances it only on success or a terminal stall
# (kustomize-controller finalizeStatus, source-controller ComputeReconcileResult, helm-controller's patch with no
# error and no requeue), and a new object starts at -1, the CRD default. Only the Ready condition's own
# observedGeneration says which spec a failure belongs to.


def test_a_failure_at_the_current_generation_fails_however_far_status_observed_generation_lags() -> None:
    # A push that edits a Kustomization's spec and breaks its build.
    body = kustomization(
        "apps",
        applied=OLD,
        attempted=NEW,
        generation=2,
        observed=1,
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "Building manifests", generation=2),
            condition("Ready", "False", "BuildFailed", "kustomize build failed: accumulating resources", generation=2),
        ],
    )
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.FAILED, "BuildFailed")
    assert result.revision == NEW


def test_a_new_object_whose_first_build_fails_fails() -> None:
    body = kustomization(
        "apps",
        attempted=NEW,
        observed=-1,
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "Building manifests"),
            condition("Ready", "False", "BuildFailed", "kustomize build failed: missing resource"),
        ],
    )
    assert judge(body).phase is Phase.FAILED


def test_a_git_repository_whose_new_branch_does_not_exist_fails() -> None:
    message = "failed to checkout and determine revision: unable to clone: couldn't find remote ref 'refs/heads/nope'"
    body = git_repository(
        revision=OLD,
        ref={"branch": "nope"},
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "building artifact", generation=2),
            condition("Ready", "False", "GitOperationFailed", message, generation=2),
            condition("FetchFailed", "True", "GitOperationFailed", message, generation=2),
        ],
    )
    body["metadata"]["generation"] = 2
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.FAILED, "GitOperationFailed")


def test_ready_written_for_an_older_generation_is_progressing_whatever_status_observed_generation_says() -> None:
    body = kustomization("apps", applied=NEW, conditions=ready(NEW, generation=2), generation=3, observed=3)
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.PROGRESSING, "NewGeneration")
    assert "generation 3" in result.message
    assert "generation 2" in result.message


def test_a_condition_generation_of_zero_means_none_as_flux_reads_it() -> None:
    # flux2 readiness.go: APIs without per-condition generations write 0; status.observedGeneration decides then.
    body = kustomization("apps", applied=NEW, conditions=ready(NEW, generation=0), generation=2, observed=1)
    assert judge(body).phase is Phase.PROGRESSING
    body["status"]["observedGeneration"] = 2
    assert judge(body).phase is Phase.READY


# A `+<12 hex>` chart version names a commit only when the chart is built from a GitRepository.

OCI_CHART_REF = {"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}


def oci_helm_release(conditions: list[dict[str, Any]], *, attempted: str | None = None) -> dict[str, Any]:
    body = helm_release("podinfo", chart_version="6.6.1+0cc9a8446c95", attempted=attempted, conditions=conditions)
    del body["spec"]["chart"]
    body["spec"]["chartRef"] = OCI_CHART_REF
    return body


def test_a_ready_helm_release_from_an_oci_chart_ref_is_ready_under_commit() -> None:
    result = judge(oci_helm_release([condition("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded")]))
    assert (result.phase, result.target_matched) == (Phase.READY, None)


def test_a_failed_helm_release_from_an_oci_chart_ref_is_failed_under_commit() -> None:
    body = oci_helm_release(
        [condition("Ready", "False", "UpgradeFailed", "Helm upgrade failed: context deadline exceeded")],
        attempted="6.6.2+1dd9b8557d06",
    )
    assert judge(body).phase is Phase.FAILED


def test_a_digest_suffix_never_matches_even_when_it_looks_like_the_pushed_commit() -> None:
    body = oci_helm_release([condition("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded")])
    body["status"]["history"][0]["chartVersion"] = f"6.6.1+{SHA_NEW[:12]}"
    assert judge(body).target_matched is None


@pytest.mark.parametrize(("source_kind", "traced"), [("GitRepository", True), ("Bucket", False)])
def test_a_helm_chart_names_a_commit_only_when_built_from_git(source_kind: str, traced: bool) -> None:
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "apps-web", "namespace": "flux-system", "generation": 1},
        "spec": {"chart": "./charts/web", "sourceRef": {"kind": source_kind, "name": "fleet"}},
        "status": {
            "observedGeneration": 1,
            "artifact": {"revision": f"6.0.3+{SHA_OLD[:12]}"},
            "conditions": [condition("Ready", "True", "ChartPackageSucceeded", "packaged 'web' chart")],
        },
    }
    result = judge(body)
    assert (result.phase, result.target_matched) == ((Phase.PENDING, False) if traced else (Phase.READY, None))


def test_a_helm_release_from_a_bucket_chart_carries_no_trace() -> None:
    body = helm_release(
        "web",
        chart_source={"kind": "Bucket", "name": "charts", "namespace": "flux-system"},
        chart_version=f"1.2.0+{SHA_OLD[:12]}",
        conditions=[condition("Ready", "True", "InstallSucceeded", "Helm install succeeded")],
    )
    assert (judge(body).phase, judge(body).target_matched) == (Phase.READY, None)


# helm-controller's failures before any release action: Reconciling=True/Progressing "Fulfilling prerequisites",
# Ready=False with the error, retried with backoff (internal/controller/helmrelease_controller.go reconcileRelease).

FULFILLING = condition("Reconciling", "True", "Progressing", "Fulfilling prerequisites", generation=2)


def prerequisite_failure(reason: str, message: str) -> dict[str, Any]:
    body = helm_release(
        "web",
        chart_source=GIT_CHART,
        chart_version=f"1.2.0+{SHA_OLD[:12]}",
        generation=2,
        conditions=[FULFILLING, condition("Ready", "False", reason, message, generation=2)],
    )
    body["status"]["observedGeneration"] = 1  # helm-controller returned an error: not advanced
    return body


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (
            "ValuesError",
            "could not resolve Secret chart values reference 'apps/web-values' with key 'values.yaml': "
            'secrets "web-values" not found',
        ),
        (
            "ArtifactFailed",
            'could not get Source object: helmcharts.source.toolkit.fluxcd.io "apps-web" not found',
        ),
        ("ArtifactFailed", "Could not load chart: failed to download artifact: 500 Internal Server Error"),
        ("RESTClientError", "could not get KubeConfig secret 'apps/kubeconfig': secrets \"kubeconfig\" not found"),
    ],
)
def test_a_helm_failure_before_any_release_action_fails_the_push(reason: str, message: str) -> None:
    # The attempted chart revision is older: the failure is of the current spec, not of a chart revision.
    result = judge(prerequisite_failure(reason, message))
    assert (result.phase, result.reason, result.message) == (Phase.FAILED, reason, message)


def test_a_helm_release_waiting_for_its_chart_source_is_waiting() -> None:
    body = prerequisite_failure(
        "SourceNotReady",
        "HelmChart 'flux-system/apps-web' is not ready: latest generation of object has not been reconciled",
    )
    assert judge(body).phase is Phase.WAITING


def test_a_chart_artifact_replaced_under_helm_controller_is_progressing() -> None:
    body = prerequisite_failure("ArtifactFailed", "Source not ready: artifact not found. Retrying in 30s")
    assert judge(body).phase is Phase.PROGRESSING


# An install or upgrade that failed while remediation retries remain is retried at once: not final.

UPGRADE_ERROR = "Helm upgrade failed for release apps/web with chart web@1.2.0+7d1f6c2a9b8e: context deadline exceeded"


def failed_upgrade(*, retries: int, failures: int, strategy: str = "", stalled: bool = False) -> dict[str, Any]:
    rollback = "Helm rollback to previous release apps/web.v3 with chart web@1.2.0+0f9e8d7c6b5a succeeded"
    conditions = [
        condition("Reconciling", "True", "ProgressingWithRetry", rollback),
        condition("Ready", "False", "RollbackSucceeded", rollback),
        condition("Released", "False", "UpgradeFailed", UPGRADE_ERROR),
        condition("Remediated", "True", "RollbackSucceeded", rollback),
    ]
    if stalled:
        conditions[0] = condition(
            "Stalled", "True", "RetriesExceeded", f"Failed to upgrade after {failures} attempt(s)"
        )
    body = helm_release(
        "web",
        chart_source=GIT_CHART,
        chart_version=f"1.2.0+{SHA_OLD[:12]}",
        attempted=f"1.2.0+{SHA_NEW[:12]}",
        conditions=conditions,
    )
    body["spec"]["upgrade"] = {"remediation": {"retries": retries}}
    if strategy:
        body["spec"]["upgrade"]["strategy"] = {"name": strategy}
    body["status"].update(upgradeFailures=failures, lastAttemptedReleaseAction="upgrade")
    return body


def test_an_upgrade_failure_with_retries_left_is_shown_at_once_and_not_final() -> None:
    result = judge(failed_upgrade(retries=3, failures=1))
    assert (result.phase, result.reason) == (Phase.PROGRESSING, "UpgradeFailed")
    assert result.message == f"upgrade failed, retry 1 of 3: {UPGRADE_ERROR}"
    assert result.revision == f"1.2.0+{SHA_NEW[:12]}"


def test_unlimited_retries_are_never_spent() -> None:
    assert judge(failed_upgrade(retries=-1, failures=7)).message.startswith("upgrade failed, retry 7 of unlimited: ")


@pytest.mark.parametrize(
    ("retries", "failures", "strategy", "stalled"),
    [
        (3, 4, "", False),  # past the retries: final, even before Stalled is written
        (3, 4, "", True),  # Stalled=RetriesExceeded
        (0, 1, "", False),  # the default: no retries at all
        (3, 1, "RetryOnFailure", False),  # retried after an interval, not at once: failed until then
    ],
)
def test_an_upgrade_failure_is_final_once_the_retries_are_spent(
    retries: int, failures: int, strategy: str, stalled: bool
) -> None:
    result = judge(failed_upgrade(retries=retries, failures=failures, strategy=strategy, stalled=stalled))
    assert result.phase is Phase.FAILED
    assert UPGRADE_ERROR in result.message


def test_an_install_failure_counts_install_failures() -> None:
    body = helm_release(
        "web",
        chart_source=GIT_CHART,
        attempted=f"1.2.0+{SHA_NEW[:12]}",
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "Helm uninstall succeeded"),
            condition("Ready", "False", "InstallFailed", "Helm install failed for release apps/web: timeout"),
        ],
    )
    body["spec"]["install"] = {"remediation": {"retries": 2}}
    body["status"].update(installFailures=2)  # v2beta1 has no lastAttemptedReleaseAction: the reason tells
    assert judge(body).message.startswith("install failed, retry 2 of 2: Helm install failed")
    body["status"]["installFailures"] = 3
    assert judge(body).phase is Phase.FAILED


def test_health_checks_cancelled_by_a_newer_request_are_not_a_failure() -> None:
    # kustomize-controller writes this when a new reconcile (often the push itself) interrupts the health checks,
    # and requeues at once; finalizeStatus still turns Reconciling to ProgressingWithRetry.
    body = kustomization(
        "apps",
        applied=OLD,
        attempted=NEW,
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "Running health checks"),
            condition(
                "Ready",
                "False",
                "HealthCheckCanceled",
                "New reconciliation triggered by GitRepository/flux-system/fleet",
            ),
        ],
    )
    assert judge(body).phase is Phase.PROGRESSING


def test_a_release_failure_at_an_older_revision_shows_the_release_error_not_the_rollback() -> None:
    body = failed_upgrade(retries=3, failures=1)
    body["status"]["lastAttemptedRevision"] = f"1.2.0+{SHA_OLD[:12]}"
    result = judge(body)
    assert (result.phase, result.reason) == (Phase.PENDING, "UpgradeFailed")
    assert result.message.endswith(UPGRADE_ERROR)
