"""Stand-ins for the Flux CRDs: the real groups, kinds, versions, printer columns and status default.

Real Flux CRDs carry full OpenAPI schemas. The simulator and the tests need the API surface, plus the parts of
the schema a client can see: the `status` default (`observedGeneration: -1`, so a new object reads as never
reconciled) and the printer columns that `kubectl get` shows. A schema that preserves unknown fields is
accepted by a real kube-apiserver too. Sources (config/crd/bases in each repository):
- fluxcd/source-controller@39b711b1 source.toolkit.fluxcd.io_{gitrepositories,ocirepositories,buckets,
  helmrepositories,helmcharts}.yaml
- fluxcd/kustomize-controller@186fb3b2 kustomize.toolkit.fluxcd.io_kustomizations.yaml
- fluxcd/helm-controller@0f61a860 helm.toolkit.fluxcd.io_helmreleases.yaml
"""

from __future__ import annotations

from typing import Any

READY = '.status.conditions[?(@.type=="Ready")].status'
STATUS = '.status.conditions[?(@.type=="Ready")].message'
AGE = ("Age", "date", ".metadata.creationTimestamp")
READY_STATUS = (("Ready", "string", READY), ("Status", "string", STATUS))
Column = tuple[str, str, str]

FLUX_RESOURCES: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], tuple[Column, ...]], ...] = (
    (
        "source.toolkit.fluxcd.io",
        "GitRepository",
        "gitrepositories",
        ("v1", "v1beta2"),
        ("gitrepo",),
        (("URL", "string", ".spec.url"), AGE, *READY_STATUS),
    ),
    (
        "source.toolkit.fluxcd.io",
        "OCIRepository",
        "ocirepositories",
        ("v1", "v1beta2"),
        ("ocirepo",),
        (("URL", "string", ".spec.url"), *READY_STATUS, AGE),
    ),
    (
        "source.toolkit.fluxcd.io",
        "Bucket",
        "buckets",
        ("v1", "v1beta2"),
        (),
        (("Endpoint", "string", ".spec.endpoint"), AGE, *READY_STATUS),
    ),
    (
        "source.toolkit.fluxcd.io",
        "HelmRepository",
        "helmrepositories",
        ("v1", "v1beta2"),
        ("helmrepo",),
        (("URL", "string", ".spec.url"), AGE, *READY_STATUS),
    ),
    (
        "source.toolkit.fluxcd.io",
        "HelmChart",
        "helmcharts",
        ("v1", "v1beta2"),
        ("hc",),
        (
            ("Chart", "string", ".spec.chart"),
            ("Version", "string", ".spec.version"),
            ("Source Kind", "string", ".spec.sourceRef.kind"),
            ("Source Name", "string", ".spec.sourceRef.name"),
            AGE,
            *READY_STATUS,
        ),
    ),
    (
        "kustomize.toolkit.fluxcd.io",
        "Kustomization",
        "kustomizations",
        ("v1", "v1beta2"),
        ("ks",),
        (AGE, *READY_STATUS),
    ),
    (
        "helm.toolkit.fluxcd.io",
        "HelmRelease",
        "helmreleases",
        ("v2", "v2beta2", "v2beta1"),
        ("hr",),
        (AGE, *READY_STATUS),
    ),
)
"""(group, kind, plural, versions with the storage version first, short names, printer columns)."""

PLURALS = {kind: plural for _, kind, plural, _, _, _ in FLUX_RESOURCES}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "status": {
            # Every Flux CRD defaults status to this: a new object's observedGeneration is -1 until it is reconciled.
            "type": "object",
            "default": {"observedGeneration": -1},
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"observedGeneration": {"type": "integer", "format": "int64"}},
        },
    },
}


def flux_crds(*, only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """CRD bodies for the Flux kinds (or the kinds in `only`), ready to POST to apiextensions.k8s.io/v1."""
    return [
        _crd(group, kind, plural, versions, short, columns)
        for group, kind, plural, versions, short, columns in FLUX_RESOURCES
        if not only or kind in only
    ]


def _crd(
    group: str, kind: str, plural: str, versions: tuple[str, ...], short: tuple[str, ...], columns: tuple[Column, ...]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "flux"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
                "shortNames": list(short),
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": index == 0,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": SCHEMA},
                    "additionalPrinterColumns": [
                        {"name": name, "type": type_, "jsonPath": path} for name, type_, path in columns
                    ],
                }
                for index, version in enumerate(versions)
            ],
        },
    }
