"""The simulated API server on its own: kubectl against it, auth, bookmarks, timeouts and fault injection."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import ApiStatusError, KubeClient, Resource
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig
from fluxmon.sim.tables import human_age, json_path


@pytest.fixture
def server() -> Iterator[SimApiServer]:
    api = SimApiServer()
    api.start()
    try:
        client = KubeClient(api.url)
        install_crds(client, only=("Kustomization",))
        client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": "flux-system"}})
        yield api
    finally:
        api.stop()


def kustomization(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name},
        "spec": {"path": "./apps", "interval": "10m"},
    }


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_get_watch_and_annotate(server: SimApiServer, tmp_path: Path) -> None:
    client = KubeClient(server.url)
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    client.create(kustomizations, "flux-system", kustomization("apps"))
    env = {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", server=server.url)),
        "HOME": str(tmp_path),
    }
    listed = subprocess.run(["kubectl", "get", "ks", "-A"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "apps" in listed.stdout
    watcher = subprocess.Popen(
        [
            "kubectl",
            "get",
            "kustomizations",
            "-n",
            "flux-system",
            "-w",
            "--output-watch-events",
            "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,AT:.object.metadata.annotations",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first_lines = [watcher.stdout.readline() for _ in range(2)]  # header, then the current object
        assert "ADDED" in first_lines[1], first_lines
        annotated = subprocess.run(
            [
                "kubectl",
                "annotate",
                "--overwrite",
                "-n",
                "flux-system",
                "kustomization",
                "apps",
                "reconcile.fluxcd.io/requestedAt=2026-11-25T10:00:00Z",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert annotated.returncode == 0, annotated.stderr
        modified = watcher.stdout.readline()
        assert "MODIFIED" in modified
        assert "2026-11-25T10:00:00Z" in modified
    finally:
        watcher.terminate()
        watcher.communicate(timeout=10)
    assert client.get(kustomizations, "flux-system", "apps")["metadata"]["annotations"] == {
        "reconcile.fluxcd.io/requestedAt": "2026-11-25T10:00:00Z"
    }


def test_tokens_and_the_authorizer_give_401_and_403() -> None:
    def authorize(user: str, verb: str, group: str, resource: str, namespace: str) -> bool:
        return user == "admin" or resource != "kustomizations"

    api = SimApiServer(tokens={"admin-token": "admin", "dev-token": "dev"}, authorizer=authorize)
    api.start()
    try:
        install_crds(KubeClient(api.url, token="admin-token"), only=("Kustomization",))
        admin = KubeClient(api.url, token="admin-token")
        kustomizations = admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        with pytest.raises(ApiStatusError) as unauthorized:
            KubeClient(api.url, token="wrong").list(kustomizations)
        assert (unauthorized.value.code, unauthorized.value.reason) == (401, "Unauthorized")
        with pytest.raises(ApiStatusError) as forbidden:
            KubeClient(api.url, token="dev-token").list(kustomizations)
        assert (forbidden.value.code, forbidden.value.reason) == (403, "Forbidden")
        assert forbidden.value.message == (
            'kustomizations.kustomize.toolkit.fluxcd.io is forbidden: User "dev" cannot list resource '
            '"kustomizations" in API group "kustomize.toolkit.fluxcd.io" at the cluster scope'
        )
        assert KubeClient(api.url, token="dev-token").list(admin.resource("v1", "Namespace"))["items"]
    finally:
        api.stop()


def test_a_quiet_watch_gets_bookmarks_and_ends_at_its_timeout(server: SimApiServer) -> None:
    client = KubeClient(server.url)
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    start = client.list(kustomizations)["metadata"]["resourceVersion"]
    events = list(client.watch(kustomizations, resource_version=start, timeout_seconds=2))
    assert events
    assert {event["type"] for event in events} == {"BOOKMARK"}
    assert events[-1]["object"]["metadata"]["resourceVersion"] == start


def test_dropped_watches_end_and_compaction_gives_410(server: SimApiServer) -> None:
    client = KubeClient(server.url)
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    start = client.list(kustomizations)["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []
    added = threading.Event()
    ended = threading.Event()

    def follow() -> None:
        for event in client.watch(kustomizations, resource_version=start, timeout_seconds=60):
            seen.append(event)
            if event["type"] == "ADDED":
                added.set()
        ended.set()

    thread = threading.Thread(target=follow, name="test-watch")
    thread.start()
    client.create(kustomizations, "flux-system", kustomization("a"))
    assert added.wait(10), "the watch did not deliver the new object"
    server.drop_watches()  # the watch is live (it delivered an event), so this must end it
    assert ended.wait(10), "the watch did not end when the server dropped it"
    thread.join(5)
    assert [event["type"] for event in seen if event["type"] != "BOOKMARK"] == ["ADDED"]
    server.compact()
    (expired,) = list(client.watch(kustomizations, resource_version=start, timeout_seconds=5))
    assert (expired["type"], expired["object"]["code"], expired["object"]["reason"]) == ("ERROR", 410, "Expired")


def test_a_stopped_server_comes_back_on_the_same_port_with_its_objects(server: SimApiServer) -> None:
    client = KubeClient(server.url)
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    client.create(kustomizations, "flux-system", kustomization("kept"))
    url = server.url
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        client.list(kustomizations)
    server.start()
    assert server.url == url
    assert [i["metadata"]["name"] for i in client.list(kustomizations)["items"]] == ["kept"]


def test_oversized_and_malformed_bodies_are_refused(server: SimApiServer) -> None:
    client = KubeClient(server.url)
    configmaps = client.resource("v1", "ConfigMap")
    with pytest.raises(ApiStatusError) as too_large:
        client.create(configmaps, "flux-system", {"metadata": {"name": "big"}, "data": {"k": "x" * (4 * 1024 * 1024)}})
    assert too_large.value.code == 413
    with pytest.raises(ApiStatusError) as no_name:
        client.create(configmaps, "flux-system", {"metadata": {}})
    assert (no_name.value.code, no_name.value.reason) == (422, "Invalid")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_get_piped_into_assess(server: SimApiServer, tmp_path: Path) -> None:
    client = KubeClient(server.url)
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    client.create(kustomizations, "flux-system", kustomization("apps"))
    revision = "main@sha1:7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
    client.patch_status(
        kustomizations,
        "flux-system",
        "apps",
        {
            "observedGeneration": 1,
            "lastAppliedRevision": revision,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ReconciliationSucceeded",
                    "message": f"Applied revision: {revision}",
                    "observedGeneration": 1,
                }
            ],
        },
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", server=server.url)),
        "HOME": str(tmp_path),
    }
    listing = subprocess.run(
        ["kubectl", "get", "kustomizations", "-A", "-o", "yaml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assessed = subprocess.run(
        [sys.executable, "-m", "fluxmon", "assess", "--output", "table", "--commit", "7d1f6c2"],
        input=listing,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert assessed.returncode == 0, assessed.stderr
    assert assessed.stdout.splitlines()[1].split()[:5] == [
        "flux-system",
        "kustomization/apps",
        "main@sha1:7d1f6c2a",
        "False",
        "Ready",
    ]


def test_server_side_apply_creates_with_201_then_merges(server: SimApiServer) -> None:
    client = KubeClient(server.url)
    resource = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    path = resource.path("flux-system", "applied") + "?fieldManager=kubectl&force=true"
    body = {**kustomization("applied"), "metadata": {"name": "applied", "labels": {"team": "a"}}}
    created = client.request("PATCH", path, body=body, content_type="application/apply-patch+yaml")
    assert (created["metadata"]["generation"], created["status"]) == (1, {"observedGeneration": -1})
    updated = client.request(
        "PATCH",
        path,
        body={**body, "spec": {"path": "./other", "interval": "10m"}},
        content_type="application/apply-patch+yaml",
    )
    assert (updated["spec"]["path"], updated["metadata"]["generation"]) == ("./other", 2)
    assert updated["metadata"]["labels"] == {"team": "a"}


def test_printer_columns_follow_json_paths_and_ages_read_as_kubectl_shows_them() -> None:
    obj = {"status": {"conditions": [{"type": "Healthy", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert json_path('.status.conditions[?(@.type=="Ready")].status', obj) == "True"
    assert json_path(".status.conditions[0].type", obj) == "Healthy"
    assert json_path('.status.conditions[?(@.type=="Stalled")].status', obj) is None
    assert json_path(".spec.url", obj) is None
    then = "2026-01-01T00:00:00Z"
    base = 1767225600.0  # 2026-01-01T00:00:00Z
    assert [human_age(then, now=base + seconds) for seconds in (5, 150, 600, 7200, 30 * 3600, 3 * 86400)] == [
        "5s",
        "2m30s",
        "10m",
        "120m",
        "30h",
        "3d",
    ]
    assert human_age("yesterday") == "<invalid>"


def test_a_watch_cut_in_the_middle_of_a_chunk_ends_like_any_cut_watch() -> None:
    """A server going away mid-chunk (the real kube-apiserver stopping under a watch) raised IncompleteRead, an
    HTTPException and not an OSError, and killed the simulated controllers' informer thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_half_a_chunk() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'40\r\n{"type": "ADDED"'
            )

    server = threading.Thread(target=serve_half_a_chunk, name="half-a-chunk")
    server.start()
    try:
        client = KubeClient(f"http://127.0.0.1:{port}")
        resource = Resource(
            group="kustomize.toolkit.fluxcd.io",
            version="v1",
            plural="kustomizations",
            kind="Kustomization",
            namespaced=True,
        )
        assert list(client.watch(resource, resource_version="1", timeout_seconds=5)) == []
    finally:
        server.join(10)
        listener.close()
