"""Hints: from a Flux reason to the likely cause and the documentation page that explains it.

A built-in table, so that a hint never needs the network. Reasons not in the table get a generic hint by kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmon.core.objects import ObjectRef

KUSTOMIZATION_DOCS = "https://fluxcd.io/flux/components/kustomize/kustomizations/"
HELMRELEASE_DOCS = "https://fluxcd.io/flux/components/helm/helmreleases/"
GITREPOSITORY_DOCS = "https://fluxcd.io/flux/components/source/gitrepositories/"
OCIREPOSITORY_DOCS = "https://fluxcd.io/flux/components/source/ocirepositories/"
BUCKET_DOCS = "https://fluxcd.io/flux/components/source/buckets/"
HELMREPOSITORY_DOCS = "https://fluxcd.io/flux/components/source/helmrepositories/"
HELMCHART_DOCS = "https://fluxcd.io/flux/components/source/helmcharts/"
TROUBLESHOOTING_DOCS = "https://fluxcd.io/flux/cheatsheets/troubleshooting/"
"""The anchors below are the headings of each kind's docs/spec page in its controller's repository (fluxcd.io
builds these pages from them): kustomize-controller docs/spec/v1/kustomizations.md@186fb3b2, helm-controller
docs/spec/v2/helmreleases.md@0f61a860, source-controller docs/spec/v1/*.md@39b711b1."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Hint:
    """What probably went wrong, where to read about it, and a command to dig further."""

    cause: str
    docs: str
    command: str


_BY_REASON: dict[str, tuple[str, str]] = {
    "BuildFailed": (
        "kustomize could not build the manifests at spec.path in this commit: look for broken YAML or a wrong "
        "entry in kustomization.yaml",
        KUSTOMIZATION_DOCS + "#path",
    ),
    "ArtifactFailed": (
        "the source artifact or spec.path is missing: check that the path exists in this commit and that the "
        "source is Ready",
        KUSTOMIZATION_DOCS + "#path",
    ),
    "HealthCheckFailed": (
        "a workload did not become ready within spec.timeout: check its pods (kubectl describe, kubectl logs)",
        KUSTOMIZATION_DOCS + "#health-checks",
    ),
    "DependencyNotReady": (
        "a dependsOn dependency has not applied this revision yet (or is failing)",
        KUSTOMIZATION_DOCS + "#dependencies",
    ),
    "ReconciliationFailed": (
        "the API server refused the manifests (server-side dry-run): an unknown kind, a missing CRD or an "
        "invalid field",
        KUSTOMIZATION_DOCS,
    ),
    "ValidationFailed": (
        "the API server refused the manifests in the server-side dry-run (the v1beta1 and v1beta2 APIs' name for "
        "ReconciliationFailed): an unknown kind, a missing CRD or an invalid field",
        KUSTOMIZATION_DOCS,
    ),
    "PruneFailed": ("objects removed from git could not be deleted from the cluster", KUSTOMIZATION_DOCS + "#prune"),
    "InstallFailed": (
        "helm install failed: read the release's events and the pods it created",
        HELMRELEASE_DOCS + "#install-remediation",
    ),
    "UpgradeFailed": (
        "helm upgrade failed: read the release's events and the pods it changed",
        HELMRELEASE_DOCS + "#upgrade-remediation",
    ),
    "TestFailed": (
        "the chart's helm tests failed after the release (spec.test.ignoreFailures would keep the release Ready)",
        HELMRELEASE_DOCS + "#test-configuration",
    ),
    "RetriesExceeded": (
        "remediation retries are used up; the release stays failed until its spec or chart changes, or until "
        "`flux reconcile helmrelease --reset`",
        HELMRELEASE_DOCS + "#resetting-remediation-retries",
    ),
    "ValuesError": (
        "the release's values could not be composed: a Secret or ConfigMap in spec.valuesFrom is missing, lacks "
        "the key, or does not hold valid YAML",
        HELMRELEASE_DOCS + "#values-references",
    ),
    "SourceNotReady": (
        "the chart's source (the HelmChart, or the OCIRepository of spec.chartRef) is not ready: look at its own "
        "status, which holds the real error",
        HELMRELEASE_DOCS + "#chart-template",
    ),
    "ChartMutateError": (
        "the chart's version does not match the OCI artifact's tag, or is not valid semver",
        HELMRELEASE_DOCS + "#chart-reference",
    ),
    "RESTClientError": (
        "helm-controller could not build a client for the target cluster: the kubeconfig Secret in "
        "spec.kubeConfig is missing or invalid",
        HELMRELEASE_DOCS + "#kubeconfig-remote-clusters",
    ),
    "StateError": (
        "helm-controller could not read the release's state from Helm's storage (its Secrets in the storage namespace)",
        HELMRELEASE_DOCS + "#storage-namespace",
    ),
    "RollbackFailed": (
        "the upgrade failed, and so did the rollback to the previous release: the release is left failed",
        HELMRELEASE_DOCS + "#rollback-configuration",
    ),
    "UninstallFailed": (
        "the install failed, and so did the uninstall that remediates it",
        HELMRELEASE_DOCS + "#handling-failed-uninstall",
    ),
    "MissingRollbackTarget": (
        "the upgrade failed and the release to roll back to is gone from Helm's storage",
        HELMRELEASE_DOCS + "#configuring-failure-handling",
    ),
    "ReconcileError": (
        "a Helm action other than the install or upgrade failed (a test run, a remediation, drift correction)",
        HELMRELEASE_DOCS + "#configuring-failure-handling",
    ),
    "NoSourceArtifact": (
        "the chart's source has no artifact yet: it is failing, or has not fetched",
        HELMCHART_DOCS + "#source-reference",
    ),
    "GitOperationFailed": (
        "source-controller could not clone or fetch the repository: check the URL, the branch and the secret",
        GITREPOSITORY_DOCS + "#reference",
    ),
    "OCIArtifactPullFailed": (
        "the OCI artifact could not be pulled: check the URL, the tag or semver in spec.ref, and the credentials",
        OCIREPOSITORY_DOCS + "#reference",
    ),
    "OCIOperationFailed": (
        "the OCI artifact could not be pulled (an older source-controller's reason): check the URL, spec.ref and "
        "the credentials",
        OCIREPOSITORY_DOCS + "#reference",
    ),
    "BucketOperationFailed": (
        "the bucket could not be listed or downloaded: check the endpoint, the bucket name and the credentials",
        BUCKET_DOCS + "#bucket-name",
    ),
    "ChartPullError": (
        "the chart could not be pulled: check spec.chart, spec.version and the HelmRepository",
        HELMCHART_DOCS + "#chart",
    ),
    "ChartPullFailed": (
        "the chart could not be pulled (an older source-controller's reason): check spec.chart, spec.version and "
        "the HelmRepository",
        HELMCHART_DOCS + "#chart",
    ),
    "InvalidChartReference": ("spec.chart does not name a chart the source holds", HELMCHART_DOCS + "#chart"),
    "ChartPackageError": ("the chart could not be packaged from the source", HELMCHART_DOCS + "#chart"),
    "ValuesFilesError": (
        "a file in the HelmChart's spec.valuesFiles is missing or invalid",
        HELMCHART_DOCS + "#values-files",
    ),
    "IndexationFailed": (
        "the Helm repository index could not be fetched: check the URL and the credentials",
        HELMREPOSITORY_DOCS + "#url",
    ),
}

_BY_KIND_AND_REASON: dict[tuple[str, str], tuple[str, str]] = {
    ("HelmRelease", "ArtifactFailed"): (
        "helm-controller could not get or load the chart: check that the HelmChart or OCIRepository it names "
        "exists and is Ready",
        HELMRELEASE_DOCS + "#chart-template",
    ),
    ("HelmRelease", "DependencyNotReady"): (
        "a dependsOn HelmRelease is not Ready yet (or is failing)",
        HELMRELEASE_DOCS + "#dependencies",
    ),
    ("GitRepository", "NoArtifact"): (
        "a GitRepository in spec.include has no artifact yet: it is failing, or has not fetched",
        GITREPOSITORY_DOCS + "#include",
    ),
    ("GitRepository", "NotFound"): (
        "a GitRepository named in spec.include does not exist",
        GITREPOSITORY_DOCS + "#include",
    ),
}
"""Reasons that mean something else on another kind."""

_SOURCES = frozenset({"GitRepository", "OCIRepository", "Bucket", "HelmRepository", "HelmChart"})
_APPLIERS = frozenset({"Kustomization", "HelmRelease"})

_VERIFICATION = (
    "the signature of the commit, tag or artifact could not be verified with the keys in spec.verify",
    "#verification",
    frozenset({"GitRepository", "OCIRepository", "HelmChart"}),
)
"""source-controller's reason for a failed verification: VerificationError now, VerificationFailed before."""

_BY_REASON_ON_KIND_PAGE: dict[str, tuple[str, str, frozenset[str]]] = {
    "AuthenticationFailed": (
        "the credentials in spec.secretRef were refused",
        "#secret-reference",
        _SOURCES - {"HelmChart"},
    ),
    "Suspended": (
        "reconciliation is suspended: this push is not applied here until it is resumed",
        "#suspend",
        _SOURCES | _APPLIERS,
    ),
    "InvalidCELExpression": (
        "a health check or dependency CEL expression is invalid: the controller will not retry until the spec changes",
        "#health-check-expressions",
        _APPLIERS,
    ),
    "AccessDenied": (
        "the controller refused a reference across namespaces (--no-cross-namespace-refs) or to a kind behind a "
        "feature gate",
        "#role-based-access-control",
        _APPLIERS,
    ),
    "URLInvalid": ("spec.url is not a valid URL for this kind of source", "#url", _SOURCES - {"Bucket", "HelmChart"}),
    "VerificationFailed": _VERIFICATION,
    "VerificationError": _VERIFICATION,
    "StorageOperationFailed": (
        "source-controller could not write the artifact to its storage: check its volume and its logs",
        "#artifact",
        _SOURCES,
    ),
}
"""Reasons that mean the same on every kind, explained on that kind's own page where it has that heading."""

_BY_KIND = {
    "Kustomization": KUSTOMIZATION_DOCS,
    "HelmRelease": HELMRELEASE_DOCS,
    "GitRepository": GITREPOSITORY_DOCS,
    "OCIRepository": OCIREPOSITORY_DOCS,
    "Bucket": BUCKET_DOCS,
    "HelmRepository": HELMREPOSITORY_DOCS,
    "HelmChart": HELMCHART_DOCS,
}

_FLUX_NAMES = {
    "Kustomization": "kustomization",
    "HelmRelease": "helmrelease",
    "GitRepository": "source git",
    "OCIRepository": "source oci",
    "HelmRepository": "source helm",
    "HelmChart": "source chart",
    "Bucket": "source bucket",
}


def hint_for(ref: ObjectRef, reason: str) -> Hint:
    """The hint for an object in trouble for `reason`."""
    page = _BY_KIND.get(ref.kind, TROUBLESHOOTING_DOCS)
    if (ref.kind, reason) in _BY_KIND_AND_REASON:
        cause, docs = _BY_KIND_AND_REASON[ref.kind, reason]
    elif reason in _BY_REASON_ON_KIND_PAGE:
        cause, anchor, kinds = _BY_REASON_ON_KIND_PAGE[reason]
        docs = page + anchor if ref.kind in kinds else page
    else:
        cause, docs = _BY_REASON.get(reason, (f"{ref.kind} reported {reason or 'an error'}", page))
    flux_name = _FLUX_NAMES.get(ref.kind, ref.kind.lower())
    if reason == "Suspended":
        command = f"flux resume {flux_name} {ref.name} -n {ref.namespace}"
    else:
        command = f"flux events --for {ref.kind}/{ref.name} -n {ref.namespace}"
    return Hint(cause=cause, docs=docs, command=command)
