"""The engine judges only the sessions that a write can change (issue #16), and skips none that it does change.

The session manager re-evaluates a session when an object it reads is written, and reads only those objects. This
suite proves the other half of that bargain over real HTTP to the simulated API server: a status write to any
object a push follows, whatever its role (source, Kustomization, the HelmRelease one applies, an upstream
dependency), reaches that push's snapshot; and a structural write (a new Kustomization) still replans. And the
adapter lists in pages, so that a large cluster is never held whole as JSON.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.cluster import KindApi
from fluxmon.core.engine import Engine
from fluxmon.core.kube import Cluster
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import Role, SessionSnapshot, SessionSpec, SessionState
from fluxmon.sim.apiserver import Authorizer, SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig
from tests.clusters import Cluster as ApiServer
from tests.flux_bodies import SHA_NEW, SHA_OLD, condition, git_repository, helm_release, kustomization, ready

SNAPSHOT_TIMEOUT_SECONDS = 30.0
FLEET = "ssh://git@github.com/acme/fleet"
OTHER = "ssh://git@github.com/acme/other"
INFRA = "ssh://git@github.com/acme/infra"
API_VERSIONS = {
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
}


def fleet_objects() -> list[dict[str, Any]]:
    """Two repositories' objects. The fleet push follows its source, two Kustomizations (one waits on infra's,
    from another repository: upstream), and the HelmRelease one of them applies; the other push follows its own."""
    applied_old = f"main@sha1:{SHA_OLD}"
    return [
        git_repository("fleet", url=FLEET, revision=f"main@sha1:{SHA_NEW}"),
        git_repository("infra", url=INFRA, revision=f"main@sha1:{SHA_OLD}"),
        git_repository("other", url=OTHER, revision=f"main@sha1:{SHA_OLD}"),
        kustomization("infra", source="infra", applied=applied_old, conditions=ready(applied_old)),
        kustomization("apps", depends_on=("infra",), applied=applied_old, conditions=ready(applied_old)),
        kustomization("web", applied=applied_old, conditions=ready(applied_old)),
        kustomization("other-apps", source="other", applied=applied_old, conditions=ready(applied_old)),
        helm_release(
            "web",
            labels={"kustomize.toolkit.fluxcd.io/name": "web", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
            conditions=[condition("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded")],
        ),
    ]


class Pushes:
    """Every push snapshot the engine publishes, by session id, to wait on."""

    def __init__(self) -> None:
        self.published: queue.Queue[SessionSnapshot] = queue.Queue()

    def on_push(self, push: PushSnapshot) -> None:
        self.published.put(push.first)

    def until(self, session_id: str, description: str, holds: Any) -> SessionSnapshot:
        """The first snapshot of `session_id` for which `holds(snapshot)`; fails naming `description` if none comes."""
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_SECONDS
        while True:
            left = deadline - time.monotonic()
            try:
                snapshot = self.published.get(timeout=max(left, 0.01))
            except queue.Empty:
                pytest.fail(f"session {session_id} never showed {description}")
            if snapshot.id == session_id and holds(snapshot):
                return snapshot


@contextlib.contextmanager
def fleet_server(tmp_path: Path, authorizer: Authorizer | None = None) -> Iterator[tuple[KubeClient, Path]]:
    """The fleet's objects on a started simulated API server: a client to write them, and a kubeconfig."""
    server = SimApiServer(authorizer=authorizer)
    server.start()
    try:
        client = KubeClient(server.url)
        install_crds(client)
        for namespace in ("flux-system", "apps"):
            client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": namespace}})
        for body in fleet_objects():
            create(client, body)
        yield client, write_kubeconfig(tmp_path / "kubeconfig", server=server.url)
    finally:
        server.stop()


@contextlib.contextmanager
def engine_following(tmp_path: Path) -> Iterator[tuple[KubeClient, Engine, Pushes]]:
    with fleet_server(tmp_path) as (client, kubeconfig):
        pushes = Pushes()
        engine = Engine(connect=lambda _target: Cluster.connect(kubeconfig=str(kubeconfig)))
        engine.subscribe(pushes.on_push)
        engine.start()
        try:
            yield client, engine, pushes
        finally:
            engine.stop()


def create(client: KubeClient, body: dict[str, Any]) -> None:
    resource = client.resource(body["apiVersion"], body["kind"])
    namespace = body["metadata"]["namespace"]
    status = body.pop("status")
    client.create(resource, namespace, body)
    client.patch_status(resource, namespace, body["metadata"]["name"], status)


def push(session_id: str, url: str) -> SessionSpec:
    return SessionSpec(id=session_id, remote_url=url, branch="main", commit=SHA_NEW, timeout_seconds=600)


def following_all(snapshot: SessionSnapshot) -> bool:
    return snapshot.state is SessionState.RECONCILING and len(snapshot.resources) >= 5


def test_a_status_write_to_any_object_a_push_follows_reaches_that_push(tmp_path: Path) -> None:
    with engine_following(tmp_path) as (client, engine, pushes):
        engine.add(push("fleet-push", FLEET))
        engine.add(push("other-push", OTHER))
        first = pushes.until("fleet-push", "every followed object", following_all)
        roles = {resource.role for resource in first.resources}
        assert roles == {Role.SOURCE, Role.KUSTOMIZATION, Role.HELMRELEASE, Role.UPSTREAM}, roles

        for step, followed in enumerate(first.resources):
            ref = followed.ref
            message = f"working on step {step} of {ref.name}"
            client.patch_status(
                client.resource(API_VERSIONS[ref.kind], ref.kind),
                ref.namespace,
                ref.name,
                {"conditions": [condition("Ready", "Unknown", "Progressing", message)]},
            )
            pushes.until(
                "fleet-push",
                f"the write to {ref}",
                lambda snapshot, ref=ref, message=message: any(
                    r.ref == ref and message in r.message for r in snapshot.resources
                ),
            )


def test_a_new_kustomization_for_the_pushed_repository_is_followed_at_once(tmp_path: Path) -> None:
    with engine_following(tmp_path) as (client, engine, pushes):
        engine.add(push("fleet-push", FLEET))
        pushes.until("fleet-push", "every followed object", following_all)
        applied_old = f"main@sha1:{SHA_OLD}"
        create(client, kustomization("late", applied=applied_old, conditions=ready(applied_old)))
        pushes.until(
            "fleet-push",
            "the Kustomization created after the push",
            lambda snapshot: any(r.ref.name == "late" for r in snapshot.resources),
        )


class PagedCluster(Cluster):
    """The real adapter with pages of two objects, so that a few objects span several pages."""

    page_size = 2


def test_a_list_is_read_in_pages_and_none_is_lost(cluster: ApiServer) -> None:
    install_crds(cluster.admin, only=("GitRepository",))
    cluster.admin.create(cluster.admin.resource("v1", "Namespace"), "", {"metadata": {"name": "flux-system"}})
    names = [f"repo-{index}" for index in range(5)]
    for name in names:
        create(cluster.admin, git_repository(name, url=f"{FLEET}-{name}"))
    base = Cluster.connect(kubeconfig=str(cluster.kubeconfig))
    paged = PagedCluster.__new__(PagedCluster)
    paged.__dict__.update(base.__dict__)
    try:
        api = KindApi(kind="GitRepository", group="source.toolkit.fluxcd.io", version="v1", plural="gitrepositories")
        before = paged.requests
        resource_version, items = paged.list_kind(api)
        listed = sorted(item["metadata"]["name"] for item in items)
        assert listed == names
        assert resource_version
        assert paged.requests - before == 3  # pages of 2, 2 and 1
    finally:
        paged.close()
