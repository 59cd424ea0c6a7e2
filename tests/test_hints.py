"""Hints: every reason the verdict reports as a failure or a wait has its own cause and a link that exists."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urldefrag

import pytest

from fluxmon.core.documents import iter_objects
from fluxmon.core.hints import hint_for
from fluxmon.core.objects import ObjectRef, parse_flux_object
from fluxmon.core.verdict import Phase, verdict

CORPUS = Path(__file__).parent / "fixtures" / "flux-corpus"

HEADINGS = {
    "https://fluxcd.io/flux/components/kustomize/kustomizations/": {
        "path", "health-checks", "health-check-expressions", "dependencies", "prune", "role-based-access-control",
        "suspend",
    },
    "https://fluxcd.io/flux/components/helm/helmreleases/": {
        "chart-template", "chart-reference", "dependencies", "values-references", "install-remediation",
        "upgrade-remediation", "test-configuration", "rollback-configuration", "configuring-failure-handling",
        "resetting-remediation-retries", "handling-failed-uninstall", "kubeconfig-remote-clusters",
        "storage-namespace", "health-check-expressions", "role-based-access-control", "suspend",
    },
    "https://fluxcd.io/flux/components/source/gitrepositories/": {
        "url", "secret-reference", "reference", "verification", "include", "suspend", "artifact",
    },
    "https://fluxcd.io/flux/components/source/ocirepositories/": {
        "url", "secret-reference", "reference", "verification", "suspend", "artifact",
    },
    "https://fluxcd.io/flux/components/source/buckets/": {"bucket-name", "secret-reference", "suspend", "artifact"},
    "https://fluxcd.io/flux/components/source/helmrepositories/": {"url", "secret-reference", "suspend", "artifact"},
    "https://fluxcd.io/flux/components/source/helmcharts/": {
        "source-reference", "chart", "values-files", "verification", "suspend", "artifact",
    },
}  # fmt: skip
"""The anchors a hint may link to: headings of each page's source, fluxcd/kustomize-controller
docs/spec/v1/kustomizations.md@186fb3b2, fluxcd/helm-controller docs/spec/v2/helmreleases.md@0f61a860 and
fluxcd/source-controller docs/spec/v1/{gitrepositories,ocirepositories,buckets,helmrepositories,helmcharts}.md
@39b711b1, as fluxcd.io turns them into anchors (lower case, spaces to hyphens, punctuation dropped)."""

REASONS = [
    # kustomize-controller (internal/controller/kustomization_controller.go@186fb3b2, fluxcd/pkg apis/meta)
    ("Kustomization", "ArtifactFailed"),
    ("Kustomization", "BuildFailed"),
    ("Kustomization", "HealthCheckFailed"),
    ("Kustomization", "ReconciliationFailed"),
    ("Kustomization", "PruneFailed"),
    ("Kustomization", "DependencyNotReady"),
    ("Kustomization", "InvalidCELExpression"),
    ("Kustomization", "AccessDenied"),
    ("Kustomization", "Suspended"),
    # helm-controller (internal/controller/helmrelease_controller.go, internal/reconcile/*.go @0f61a860)
    ("HelmRelease", "ValuesError"),
    ("HelmRelease", "ArtifactFailed"),
    ("HelmRelease", "SourceNotReady"),
    ("HelmRelease", "ChartMutateError"),
    ("HelmRelease", "RESTClientError"),
    ("HelmRelease", "StateError"),
    ("HelmRelease", "DependencyNotReady"),
    ("HelmRelease", "InstallFailed"),
    ("HelmRelease", "UpgradeFailed"),
    ("HelmRelease", "TestFailed"),
    ("HelmRelease", "RollbackFailed"),
    ("HelmRelease", "UninstallFailed"),
    ("HelmRelease", "ReconcileError"),
    ("HelmRelease", "RetriesExceeded"),
    ("HelmRelease", "MissingRollbackTarget"),
    ("HelmRelease", "InvalidCELExpression"),
    ("HelmRelease", "AccessDenied"),
    ("HelmRelease", "Suspended"),
    # source-controller (api/v1/*_types.go, internal/helm/chart/errors.go, gitrepository_controller.go @39b711b1)
    ("GitRepository", "GitOperationFailed"),
    ("GitRepository", "AuthenticationFailed"),
    ("GitRepository", "NoArtifact"),
    ("GitRepository", "NotFound"),
    ("GitRepository", "VerificationError"),
    ("GitRepository", "StorageOperationFailed"),
    ("GitRepository", "URLInvalid"),
    ("OCIRepository", "OCIArtifactPullFailed"),
    ("OCIRepository", "AuthenticationFailed"),
    ("Bucket", "BucketOperationFailed"),
    ("HelmRepository", "IndexationFailed"),
    ("HelmChart", "NoSourceArtifact"),
    ("HelmChart", "ChartPullError"),
    ("HelmChart", "ChartPackageError"),
    ("HelmChart", "ValuesFilesError"),
    ("HelmChart", "InvalidChartReference"),
    ("HelmChart", "Suspended"),
]


def link_exists(url: str) -> bool:
    page, anchor = urldefrag(url)
    return page in HEADINGS and (not anchor or anchor in HEADINGS[page])


@pytest.mark.parametrize(("kind", "reason"), REASONS, ids=lambda value: str(value))
def test_every_reason_flux_writes_has_its_own_hint_and_a_link_that_exists(kind: str, reason: str) -> None:
    hint = hint_for(ObjectRef(kind=kind, namespace="apps", name="web"), reason)
    assert not hint.cause.startswith(f"{kind} reported"), hint.cause
    assert link_exists(hint.docs), hint.docs


def test_a_reason_that_means_something_else_on_another_kind_gets_that_kind_s_hint() -> None:
    on_kustomization = hint_for(ObjectRef(kind="Kustomization", namespace="apps", name="web"), "ArtifactFailed")
    on_release = hint_for(ObjectRef(kind="HelmRelease", namespace="apps", name="web"), "ArtifactFailed")
    assert "spec.path" in on_kustomization.cause
    assert "chart" in on_release.cause
    assert on_release.docs.endswith("helmreleases/#chart-template")


def test_a_shared_reason_links_to_the_kind_s_own_page() -> None:
    oci = hint_for(ObjectRef(kind="OCIRepository", namespace="flux-system", name="app"), "AuthenticationFailed")
    assert oci.docs == "https://fluxcd.io/flux/components/source/ocirepositories/#secret-reference"
    suspended = hint_for(ObjectRef(kind="HelmRelease", namespace="apps", name="web"), "Suspended")
    assert suspended.docs == "https://fluxcd.io/flux/components/helm/helmreleases/#suspend"
    assert suspended.command == "flux resume helmrelease web -n apps"


def test_every_troubled_object_in_the_corpus_gets_a_specific_hint() -> None:
    generic = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for body in iter_objects(path.read_text(encoding="utf-8"), source=str(path)):
            obj = parse_flux_object(body)
            result = verdict(obj)
            if result.phase not in (Phase.FAILED, Phase.WAITING, Phase.SUSPENDED) or result.reason == "Failed":
                continue  # "Failed" is the generic reason: nothing more specific can be said
            hint = hint_for(obj.ref, result.reason)
            if hint.cause.startswith(f"{obj.kind} reported") or not link_exists(hint.docs):
                generic.append(f"{path.name} {obj.ref}: {result.reason} -> {hint.docs}")
    assert not generic, "\n".join(generic)
