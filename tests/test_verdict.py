"""The verdict engine: every phase, on status blocks in the shape the Flux controllers write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.documents import iter_objects
from fluxmon.core.objects import parse_flux_object
from fluxmon.core.verdict import Phase, Verdict, verdict
from tests.flux_bodies import SHA_NEW, SHA_OLD, condition, git_repository, helm_release, kustomization, ready

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
    at_new = helm_release("web", api_version=api_version, chart_version=f"1.2.0+{SHA_NEW[:12]}", conditions=succeeded)
    at_old = helm_release("web", api_version=api_version, chart_version=f"1.2.0+{SHA_OLD[:12]}", conditions=succeeded)
    assert judge(at_new).phase is Phase.READY
    assert judge(at_new).target_matched is True
    assert judge(at_old).phase is Phase.PENDING


def test_helm_release_v2beta1_uses_last_applied_revision() -> None:
    body = helm_release(
        "web",
        api_version="helm.toolkit.fluxcd.io/v2beta1",
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
