"""Stand-ins for the Flux CRDs: the real groups, kinds and versions, schema-less, with the status subresource.

Real Flux CRDs carry full OpenAPI schemas; the simulator and the tests only need the API surface, and a
schema that preserves unknown fields is accepted by a real kube-apiserver too.
"""

from __future__ import annotations

from typing import Any

FLUX_RESOURCES: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("source.toolkit.fluxcd.io", "GitRepository", "gitrepositories", ("v1", "v1beta2"), ("gitrepo",)),
    ("source.toolkit.fluxcd.io", "OCIRepository", "ocirepositories", ("v1", "v1beta2"), ("ocirepo",)),
    ("source.toolkit.fluxcd.io", "Bucket", "buckets", ("v1", "v1beta2"), ()),
    ("source.toolkit.fluxcd.io", "HelmRepository", "helmrepositories", ("v1", "v1beta2"), ("helmrepo",)),
    ("source.toolkit.fluxcd.io", "HelmChart", "helmcharts", ("v1", "v1beta2"), ("hc",)),
    ("kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations", ("v1", "v1beta2"), ("ks",)),
    ("helm.toolkit.fluxcd.io", "HelmRelease", "helmreleases", ("v2", "v2beta2", "v2beta1"), ("hr",)),
)
"""(group, kind, plural, versions with the storage version first, short names), as the Flux CRDs define them."""

PLURALS = {kind: plural for _, kind, plural, _, _ in FLUX_RESOURCES}


def flux_crds(*, only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """CRD bodies for the Flux kinds (or the kinds in `only`), ready to POST to apiextensions.k8s.io/v1."""
    return [
        _crd(group, kind, plural, versions, short)
        for group, kind, plural, versions, short in FLUX_RESOURCES
        if not only or kind in only
    ]


def _crd(group: str, kind: str, plural: str, versions: tuple[str, ...], short: tuple[str, ...]) -> dict[str, Any]:
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
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
                for index, version in enumerate(versions)
            ],
        },
    }
