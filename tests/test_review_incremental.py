"""Adversarial review of the incremental engine (issue #16): cases where evaluating only the sessions a write can
change, and sleeping until the next deadline, could give a late or wrong answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from fluxmon.core.engine import Engine
from fluxmon.core.kube import Cluster
from fluxmon.core.session import SessionSnapshot
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig
from tests.flux_bodies import SHA_OLD, condition
from tests.test_incremental import API_VERSIONS, FLEET, Pushes, create, fleet_objects, following_all, push

DENIED = ("patch", "gitrepositories")
"""A GitRepository itself may not be patched (its status may): as RBAC without patch on sources."""


@contextlib.contextmanager
def engine_without_patch_rights(tmp_path: Path) -> Iterator[tuple[KubeClient, Engine, Pushes]]:
    """The fleet on the simulated API server, where nobody may patch a GitRepository itself (only its status): a
    reconcile request for a source is refused with 403, as for a user whose RBAC lacks it."""
    server = SimApiServer(authorizer=lambda _user, verb, _group, resource, _namespace: (verb, resource) != DENIED)
    server.start()
    engine: Engine | None = None
    try:
        client = KubeClient(server.url)
        install_crds(client)
        for namespace in ("flux-system", "apps"):
            client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": namespace}})
        for body in fleet_objects():
            create(client, body)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=server.url)
        pushes = Pushes()
        engine = Engine(connect=lambda _target: Cluster.connect(kubeconfig=str(kubeconfig)))
        engine.subscribe(pushes.on_push)
        engine.start()
        yield client, engine, pushes
    finally:
        if engine is not None:
            engine.stop()
        server.stop()


def test_a_refused_reconcile_request_is_said_without_waiting_for_another_write(tmp_path: Path) -> None:
    """The note is made after the evaluation that asks; with nothing else written, it must still reach the user
    (the manager used to evaluate every second; now it sleeps until a change or a deadline)."""
    with engine_without_patch_rights(tmp_path) as (client, engine, pushes):
        engine.add(replace(push("fleet-push", FLEET), reconcile=True))
        pushes.until("fleet-push", "every followed object", following_all)
        # Past the nudge of the lagging Kustomizations (allowed): the last deadline the session had.
        pushes.until(
            "fleet-push",
            "the nudge of a lagging Kustomization",
            lambda snapshot: any("requested a reconcile of Kustomization/" in note for note in snapshot.notes),
        )
        # The source goes back to working on an older commit: the session asks it to reconcile, and is refused.
        client.patch_status(
            client.resource(API_VERSIONS["GitRepository"], "GitRepository"),
            "flux-system",
            "fleet",
            {
                "artifact": {"revision": f"main@sha1:{SHA_OLD}"},
                "conditions": [condition("Ready", "Unknown", "Progressing", "fetching")],
            },
        )

        def refused(snapshot: SessionSnapshot) -> bool:
            return any("no permission to patch" in note for note in snapshot.notes)

        pushes.until("fleet-push", "the note that the reconcile request was refused", refused)
