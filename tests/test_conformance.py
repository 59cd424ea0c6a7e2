"""Conformance: the same probes against the simulated API server and a real kube-apiserver must agree.

Each probe returns a small, comparable summary; the expected value is one constant for both servers. What the
simulator knowingly does differently is listed in fluxmon.sim.apiserver.TOLERATED_DIFFERENCES (and the README).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from fluxmon.sim.apiserver import TOLERATED_DIFFERENCES
from fluxmon.sim.client import ApiStatusError, KubeClient, Resource
from fluxmon.sim.cluster import install_crds
from tests.clusters import Cluster

NAMESPACE = "probe"
OPENAPI_PUBLISH_SECONDS = 30.0


def setup(client: KubeClient) -> tuple[Resource, Resource]:
    install_crds(client, only=("Kustomization",))
    client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": NAMESPACE}})
    return client.resource("v1", "ConfigMap"), client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def kustomization(name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name},
        "spec": {"path": "./a", "interval": "1m"},
    }
    body.update(extra)
    return body


def error_of(call: Callable[[], Any]) -> tuple[int, str]:
    try:
        call()
    except ApiStatusError as error:
        return (error.code, error.reason)
    return (200, "")


def probe_selectors_and_pages(client: KubeClient, configmaps: Resource, _: Resource) -> Any:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        client.create(configmaps, NAMESPACE, configmap(name, tier=tier))
    by_label = client.list(configmaps, NAMESPACE, labelSelector="tier=web")
    first = client.list(configmaps, NAMESPACE, limit="2", labelSelector="tier")
    rest = client.list(
        configmaps, NAMESPACE, limit="2", labelSelector="tier", **{"continue": first["metadata"]["continue"]}
    )
    by_field = client.list(configmaps, NAMESPACE, fieldSelector="metadata.name=c")
    return {
        "label": [i["metadata"]["name"] for i in by_label["items"]],
        "kind": by_label["kind"],
        "pages": [[i["metadata"]["name"] for i in page["items"]] for page in (first, rest)],
        "last_page_has_continue": bool(rest["metadata"].get("continue")),
        "field": [i["metadata"]["name"] for i in by_field["items"]],
        "set": [
            i["metadata"]["name"] for i in client.list(configmaps, NAMESPACE, labelSelector="tier notin (web)")["items"]
        ],
    }


def probe_watch_resumes(client: KubeClient, configmaps: Resource, _: Resource) -> Any:
    start = client.list(configmaps, NAMESPACE)["metadata"]["resourceVersion"]
    client.create(configmaps, NAMESPACE, configmap("w"))
    client.patch(configmaps, NAMESPACE, "w", {"data": {"k": "changed"}})
    client.delete(configmaps, NAMESPACE, "w")
    events = []
    for event in client.watch(configmaps, resource_version=start, timeout_seconds=1, namespace=NAMESPACE):
        if event["type"] != "BOOKMARK":
            events.append((event["type"], event["object"]["metadata"]["name"], event["object"].get("data")))
        if len(events) == 3:
            break
    return events


def probe_watch_too_old(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    # A real server's watch cache for a CRD starts when the CRD does: resourceVersion 1 is long gone.
    client.create(kustomizations, NAMESPACE, kustomization("x"))
    events = list(client.watch(kustomizations, resource_version="1", timeout_seconds=1, namespace=NAMESPACE))
    first = events[0]
    return (first["type"], first["object"]["code"], first["object"]["reason"])


def probe_conflict(client: KubeClient, configmaps: Resource, _: Resource) -> Any:
    created = client.create(configmaps, NAMESPACE, configmap("c1"))
    client.patch(configmaps, NAMESPACE, "c1", {"data": {"k": "newer"}})
    stale = {**created, "data": {"k": "stale"}}
    return error_of(lambda: client.request("PUT", configmaps.path(NAMESPACE, "c1"), body=stale))


def probe_patch_types(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    client.create(kustomizations, NAMESPACE, kustomization("p"))
    merge = client.patch(kustomizations, NAMESPACE, "p", {"spec": {"path": "./b"}})
    json_patch = client.patch(
        kustomizations,
        NAMESPACE,
        "p",
        [{"op": "replace", "path": "/spec/path", "value": "./c"}],
        content_type="application/json-patch+json",
    )
    failed_test = error_of(
        lambda: client.patch(
            kustomizations,
            NAMESPACE,
            "p",
            [{"op": "test", "path": "/spec/path", "value": "./nope"}],
            content_type="application/json-patch+json",
        )
    )
    strategic = error_of(
        lambda: client.patch(
            kustomizations,
            NAMESPACE,
            "p",
            {"spec": {"path": "./d"}},
            content_type="application/strategic-merge-patch+json",
        )
    )
    return {
        "merge": (merge["spec"]["path"], merge["metadata"]["generation"]),
        "json": (json_patch["spec"]["path"], json_patch["metadata"]["generation"]),
        "failed_test": failed_test,
        "strategic": strategic,
    }


def probe_status_subresource(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    created = client.create(kustomizations, NAMESPACE, kustomization("s", status={"ignored": True}))
    main = client.patch(kustomizations, NAMESPACE, "s", {"spec": {"path": "./x"}, "status": {"ignored": True}})
    status = client.patch(
        kustomizations, NAMESPACE, "s", {"spec": {"path": "./y"}, "status": {"phase": "ok"}}, subresource="status"
    )
    return {
        "status_on_create": created.get("status"),
        "status_via_main": main.get("status"),
        "generation_after_spec": main["metadata"]["generation"],
        "status_via_subresource": status.get("status"),
        "spec_via_subresource": status["spec"]["path"],
        "generation_after_status": status["metadata"]["generation"],
    }


def probe_finalizers(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    client.create(kustomizations, NAMESPACE, kustomization("f", metadata={"name": "f", "finalizers": ["test/hold"]}))
    client.delete(kustomizations, NAMESPACE, "f")
    held = client.get(kustomizations, NAMESPACE, "f")
    client.patch(kustomizations, NAMESPACE, "f", {"metadata": {"finalizers": None}})
    return {
        "held": "deletionTimestamp" in held["metadata"],
        "after_release": error_of(lambda: client.get(kustomizations, NAMESPACE, "f")),
    }


def probe_errors(client: KubeClient, configmaps: Resource, kustomizations: Resource) -> Any:
    client.create(configmaps, NAMESPACE, configmap("e"))
    return {
        "missing": error_of(lambda: client.get(configmaps, NAMESPACE, "nope")),
        "duplicate": error_of(lambda: client.create(configmaps, NAMESPACE, configmap("e"))),
        "no_namespace": error_of(lambda: client.create(configmaps, "nowhere", configmap("e"))),
        "unknown_resource": error_of(lambda: client.request("GET", "/apis/kustomize.toolkit.fluxcd.io/v1/widgets")),
    }


def probe_printer_columns(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    # What `kubectl get kustomizations` asks for: a Table built from the CRD's additionalPrinterColumns.
    client.create(kustomizations, NAMESPACE, kustomization("t"))
    client.patch_status(
        kustomizations,
        NAMESPACE,
        "t",
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "BuildFailed",
                    "message": "kustomize build failed",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )
    listing = client.request(
        "GET", kustomizations.path(NAMESPACE), accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    )
    (row,) = listing["rows"]
    return {
        "kind": listing["kind"],
        "columns": [(c["name"], c["type"]) for c in listing["columnDefinitions"]],
        "cells": [row["cells"][0], *row["cells"][2:]],
        "row_object": (row["object"]["kind"], row["object"]["metadata"]["name"]),
    }


def probe_openapi(client: KubeClient, _: Resource, kustomizations: Resource) -> Any:
    # kubectl downloads this before it validates what it applies.
    # A real server publishes a new CRD's schema about a second after the CRD: ask until it is there.
    deadline = time.monotonic() + OPENAPI_PUBLISH_SECONDS
    definitions = client.request("GET", "/openapi/v2")["definitions"]
    while "io.fluxcd.toolkit.kustomize.v1.Kustomization" not in definitions and time.monotonic() < deadline:
        time.sleep(0.2)  # nothing to wait on but the server's own publishing, as kubectl would retry
        definitions = client.request("GET", "/openapi/v2")["definitions"]
    kustomization_v1 = definitions["io.fluxcd.toolkit.kustomize.v1.Kustomization"]
    return {
        "gvk": kustomization_v1["x-kubernetes-group-version-kind"],
        "configmap": "io.k8s.api.core.v1.ConfigMap" in definitions,
    }


PROBES: dict[str, tuple[Callable[[KubeClient, Resource, Resource], Any], Any]] = {
    "selectors_and_pages": (
        probe_selectors_and_pages,
        {
            "label": ["a", "b"],
            "kind": "ConfigMapList",
            "pages": [["a", "b"], ["c"]],
            "last_page_has_continue": False,
            "field": ["c"],
            "set": ["c"],
        },
    ),
    "watch_resumes": (
        probe_watch_resumes,
        [("ADDED", "w", {"k": "v"}), ("MODIFIED", "w", {"k": "changed"}), ("DELETED", "w", {"k": "changed"})],
    ),
    "watch_too_old": (probe_watch_too_old, ("ERROR", 410, "Expired")),
    "conflict": (probe_conflict, (409, "Conflict")),
    "patch_types": (
        probe_patch_types,
        {
            "merge": ("./b", 2),
            "json": ("./c", 3),
            "failed_test": (422, "Invalid"),
            "strategic": (415, "UnsupportedMediaType"),
        },
    ),
    "status_subresource": (
        probe_status_subresource,
        {
            # The Flux CRDs default status to {observedGeneration: -1}; create and the main resource ignore status.
            "status_on_create": {"observedGeneration": -1},
            "status_via_main": {"observedGeneration": -1},
            "generation_after_spec": 2,
            "status_via_subresource": {"observedGeneration": -1, "phase": "ok"},
            "spec_via_subresource": "./x",
            "generation_after_status": 2,
        },
    ),
    "printer_columns": (
        probe_printer_columns,
        {
            "kind": "Table",
            "columns": [("Name", "string"), ("Age", "date"), ("Ready", "string"), ("Status", "string")],
            "cells": ["t", "False", "kustomize build failed"],
            "row_object": ("PartialObjectMetadata", "t"),
        },
    ),
    "openapi": (
        probe_openapi,
        {
            "gvk": [{"group": "kustomize.toolkit.fluxcd.io", "kind": "Kustomization", "version": "v1"}],
            "configmap": True,
        },
    ),
    "finalizers": (probe_finalizers, {"held": True, "after_release": (404, "NotFound")}),
    "errors": (
        probe_errors,
        {
            "missing": (404, "NotFound"),
            "duplicate": (409, "AlreadyExists"),
            "no_namespace": (404, "NotFound"),
            "unknown_resource": (404, "Not Found"),  # a plain-text page, not a Status, on both
        },
    ),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_probe_gives_the_same_answer_on_both_servers(cluster: Cluster, probe: str) -> None:
    configmaps, kustomizations = setup(cluster.admin)
    run, expected = PROBES[probe]
    assert run(cluster.admin, configmaps, kustomizations) == expected


def test_the_tolerated_differences_are_written_down() -> None:
    # The README repeats this list; a difference nobody wrote down is a bug in the simulator.
    assert len(TOLERATED_DIFFERENCES) >= 1
    readme = (__import__("pathlib").Path(__file__).parent.parent / "README.md").read_text()
    for difference in TOLERATED_DIFFERENCES:
        assert difference in readme, difference
