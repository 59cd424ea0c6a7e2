"""Hints: from a Flux reason to the likely cause and the documentation page that explains it.

A built-in table, so that a hint never needs the network. Reasons not in the table get a generic hint by kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmon.core.objects import ObjectRef

KUSTOMIZATION_DOCS = "https://fluxcd.io/flux/components/kustomize/kustomizations/"
HELMRELEASE_DOCS = "https://fluxcd.io/flux/components/helm/helmreleases/"
GITREPOSITORY_DOCS = "https://fluxcd.io/flux/components/source/gitrepositories/"
HELMCHART_DOCS = "https://fluxcd.io/flux/components/source/helmcharts/"
TROUBLESHOOTING_DOCS = "https://fluxcd.io/flux/cheatsheets/troubleshooting/"


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
    "PruneFailed": ("objects removed from git could not be deleted from the cluster", KUSTOMIZATION_DOCS + "#prune"),
    "InstallFailed": ("helm install failed: read the release's events and the pods it created", HELMRELEASE_DOCS),
    "UpgradeFailed": ("helm upgrade failed: read the release's events and the pods it changed", HELMRELEASE_DOCS),
    "TestFailed": ("the chart's helm tests failed after the release", HELMRELEASE_DOCS),
    "RetriesExceeded": (
        "remediation retries are used up; the release stays failed until its spec or chart changes",
        HELMRELEASE_DOCS,
    ),
    "GitOperationFailed": (
        "source-controller could not clone or fetch the repository: check the URL, the branch and the secret",
        GITREPOSITORY_DOCS,
    ),
    "AuthenticationFailed": (
        "the credentials in the GitRepository's secretRef were refused by the git server",
        GITREPOSITORY_DOCS + "#secret-reference",
    ),
    "Suspended": (
        "reconciliation is suspended: this push is not applied here until it is resumed",
        TROUBLESHOOTING_DOCS,
    ),
}

_BY_KIND = {
    "Kustomization": KUSTOMIZATION_DOCS,
    "HelmRelease": HELMRELEASE_DOCS,
    "GitRepository": GITREPOSITORY_DOCS,
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
    cause, docs = _BY_REASON.get(
        reason, (f"{ref.kind} reported {reason or 'an error'}", _BY_KIND.get(ref.kind, TROUBLESHOOTING_DOCS))
    )
    flux_name = _FLUX_NAMES.get(ref.kind, ref.kind.lower())
    if reason == "Suspended":
        command = f"flux resume {flux_name} {ref.name} -n {ref.namespace}"
    else:
        command = f"flux events --for {ref.kind}/{ref.name} -n {ref.namespace}"
    return Hint(cause=cause, docs=docs, command=command)
