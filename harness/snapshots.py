"""Session and push snapshots built by hand, for the pure tests of what the desktop shows."""

from __future__ import annotations

from dataclasses import replace

from fluxmon.core.cluster import FluxEvent
from fluxmon.core.hints import hint_for
from fluxmon.core.objects import ObjectRef
from fluxmon.core.push import PushSnapshot, combine
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionState
from fluxmon.core.verdict import Phase

SOURCE = ObjectRef(kind="GitRepository", namespace="flux-system", name="flux-system")
INFRA = ObjectRef(kind="Kustomization", namespace="flux-system", name="infrastructure")
APPS = ObjectRef(kind="Kustomization", namespace="flux-system", name="apps")
PODINFO = ObjectRef(kind="HelmRelease", namespace="apps", name="podinfo")
COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
CONTEXT = "fluxmon-sim"
"""The context a session is on, as the simulator's kubeconfig names it."""
BUILD_ERROR = "kustomize build failed: yaml: line 10: mapping values are not allowed <here> & there"


def resource(ref: ObjectRef, phase: Phase, **changes: object) -> ResourceStatus:
    role = {"GitRepository": Role.SOURCE, "Kustomization": Role.KUSTOMIZATION}.get(ref.kind, Role.HELMRELEASE)
    base = ResourceStatus(
        ref=ref,
        role=role,
        phase=phase,
        reason="ReconciliationSucceeded" if phase is Phase.READY else "Progressing",
        message=f"Applied revision: main@sha1:{COMMIT}" if phase is Phase.READY else "Reconciliation in progress",
        revision=f"main@sha1:{COMMIT}",
        since=1000.0,
        seconds_in_phase={phase.value: 2.0},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def snapshot(state: SessionState = SessionState.SUCCEEDED, **changes: object) -> SessionSnapshot:
    ready = state is SessionState.SUCCEEDED
    base = SessionSnapshot(
        id="s1",
        state=state,
        message="1a2b3c4 deployed: 4 resources ready" if ready else state.value,
        commit=COMMIT,
        branch="main",
        remote="https://git.example.com/acme/fleet.git",
        subject="scale web",
        repo="/home/ada/fleet",
        started_at=1000.0,
        updated_at=1042.0,
        ended_at=1042.0 if state.final else None,
        resources=(
            resource(SOURCE, Phase.READY),
            resource(INFRA, Phase.READY if ready else Phase.PROGRESSING, parent=SOURCE),
            resource(APPS, Phase.READY if ready else Phase.PENDING, parent=SOURCE, depends_on=((INFRA, Phase.READY),)),
            resource(PODINFO, Phase.READY if ready else Phase.PENDING, parent=APPS),
        ),
        context=CONTEXT,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def failed_snapshot(**changes: object) -> SessionSnapshot:
    """apps failed with BuildFailed, with a Warning event that says more than its condition."""
    failed_apps = resource(
        APPS,
        Phase.FAILED,
        parent=SOURCE,
        reason="BuildFailed",
        message="kustomize build failed",
        depends_on=((INFRA, Phase.READY),),
        hint=hint_for(APPS, "BuildFailed"),
        events=(
            FluxEvent(
                type="Warning",
                reason="BuildFailed",
                message=BUILD_ERROR,
                revision=f"main@sha1:{COMMIT}",
                timestamp="2026-11-25T10:00:00Z",
                count=2,
            ),
        ),
    )
    base = snapshot(SessionState.FAILED, failed=APPS, message="Kustomization flux-system/apps failed")
    resources = tuple(failed_apps if r.ref == APPS else r for r in base.resources)
    return replace(base, resources=resources, **changes)  # type: ignore[arg-type]


def pushed(state: SessionState = SessionState.SUCCEEDED, **changes: object) -> PushSnapshot:
    """A push followed on one cluster (the default), whose session is `snapshot(state, **changes)`."""
    return combine([snapshot(state, **changes)])


def failed_push(**changes: object) -> PushSnapshot:
    """A push whose one cluster's session is `failed_snapshot(**changes)`."""
    return combine([failed_snapshot(**changes)])


def push_of(*sessions: SessionSnapshot) -> PushSnapshot:
    """The push these sessions are (one per cluster, each naming its context when there are several), as the
    engine combines them."""
    return combine(sessions)


def on_clusters(**by_context: SessionSnapshot) -> PushSnapshot:
    """One push followed on several clusters: `on_clusters(dev=snapshot(), prod=failed_snapshot())`, each keyword a
    cluster's session (its context is the keyword), in that order."""
    return combine([replace(session, context=context) for context, session in by_context.items()])
