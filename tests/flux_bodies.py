"""Builders for Flux object bodies in the shape the controllers write them (field names, condition types,
reasons and message templates as in the Flux v2 controllers), so that each test states only what it varies."""

from __future__ import annotations

from typing import Any

SHA_OLD = "0f9e8d7c6b5a49382716a5b4c3d2e1f009182736"
SHA_NEW = "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
TIME = "2026-10-02T09:14:03Z"


def condition(type_: str, status: str, reason: str, message: str = "", *, generation: int | None = 1) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": TIME,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def ready(revision: str, *, generation: int = 1) -> list[dict[str, Any]]:
    return [
        condition("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {revision}", generation=generation)
    ]


def git_repository(
    name: str = "fleet",
    *,
    url: str = "ssh://git@github.com/acme/fleet",
    ref: dict[str, str] | None = None,
    revision: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    namespace: str = "flux-system",
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 1, "conditions": conditions or []}
    if revision:
        status["artifact"] = {"revision": revision, "lastUpdateTime": TIME}
        if conditions is None:
            status["conditions"] = [
                condition("Ready", "True", "Succeeded", f"stored artifact for revision '{revision}'"),
                condition("ArtifactInStorage", "True", "Succeeded", f"stored artifact for revision '{revision}'"),
            ]
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"interval": "1m0s", "url": url, "ref": ref if ref is not None else {"branch": "main"}},
        "status": status,
    }


def kustomization(
    name: str,
    *,
    source: str = "fleet",
    source_kind: str = "GitRepository",
    path: str = "./",
    depends_on: tuple[str, ...] = (),
    applied: str | None = None,
    attempted: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    generation: int = 1,
    observed: int | None = 1,
    suspend: bool = False,
    inventory: tuple[str, ...] = (),
    namespace: str = "flux-system",
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions if conditions is not None else []}
    if observed is not None:
        status["observedGeneration"] = observed
    if applied:
        status["lastAppliedRevision"] = applied
    if attempted or applied:
        status["lastAttemptedRevision"] = attempted or applied
    if inventory:
        status["inventory"] = {"entries": [{"id": entry, "v": "v2"} for entry in inventory]}
    spec: dict[str, Any] = {
        "interval": "10m0s",
        "path": path,
        "prune": True,
        "sourceRef": {"kind": source_kind, "name": source},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": dep} for dep in depends_on]
    if suspend:
        spec["suspend"] = True
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": spec,
        "status": status,
    }


def helm_release(
    name: str,
    *,
    namespace: str = "apps",
    api_version: str = "helm.toolkit.fluxcd.io/v2",
    chart_source: dict[str, str] | None = None,
    chart_version: str | None = None,
    attempted: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions or []}
    if chart_version:
        status["history"] = [{"name": name, "version": 1, "status": "deployed", "chartVersion": chart_version}]
    if attempted or chart_version:
        status["lastAttemptedRevision"] = attempted or chart_version
    source = chart_source or {"kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system"}
    return {
        "apiVersion": api_version,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace, "generation": generation, "labels": labels or {}},
        "spec": {"interval": "10m", "chart": {"spec": {"chart": name, "version": "*", "sourceRef": source}}},
        "status": status,
    }


GIT_CHART = {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"}
"""A chart built from the fleet repository, the one case where a `+<12 hex>` chart version names a commit."""

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
