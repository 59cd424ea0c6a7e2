"""The session manager in-process, on the real adapter over real HTTP: supersede, 410, resume; and pure rules."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.cluster import ClusterError, ClusterUnreachable, Forbidden, KindApi, KindMissing, WatchExpired
from fluxmon.core.engine import Engine
from fluxmon.core.informer import ClusterCache, KindState, KindStatus, retry_delay
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.objects import FluxObject, ObjectRef, parse_flux_object
from fluxmon.core.session import Session, SessionSnapshot, SessionSpec, SessionState, evaluate
from fluxmon.core.store import SessionStore
from fluxmon.core.terminal import progress_lines, tree
from fluxmon.core.verdict import Phase
from tests.fleet import BROKEN_YAML, SCALE_WEB, UNHEALTHY_WEB, Fleet, edit
from tests.flux_bodies import (
    SHA_NEW,
    SHA_OLD,
    condition,
    failed_upgrade,
    git_repository,
    helm_release,
    kustomization,
    ready,
)

SNAPSHOT_TIMEOUT_SECONDS = 30.0


class Recorder:
    def __init__(self) -> None:
        self.snapshots: queue.Queue[SessionSnapshot] = queue.Queue()

    def until(self, session_id: str, state: SessionState) -> SessionSnapshot:
        """The first snapshot of `session_id` in `state` that follows some resources (the cache has been read)."""
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_SECONDS
        while True:
            snapshot = self.snapshots.get(timeout=max(deadline - time.monotonic(), 0.01))
            if snapshot.id == session_id and snapshot.state is state and (snapshot.resources or state.final):
                return snapshot


class CountingCluster(Cluster):
    """The real adapter, counting lists per kind (a relist after 410 shows up here)."""

    lists: dict[str, int]

    def list_kind(self, api: KindApi) -> tuple[str, Iterator[dict[str, Any]]]:
        self.lists[api.kind] = self.lists.get(api.kind, 0) + 1
        return super().list_kind(api)


def connect(fleet: Fleet) -> CountingCluster:
    base = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    cluster = CountingCluster.__new__(CountingCluster)
    cluster.__dict__.update(base.__dict__)
    cluster.lists = {}
    return cluster


@contextlib.contextmanager
def following(fleet: Fleet, *, state_dir: Path | None = None) -> Iterator[tuple[Engine, Recorder]]:
    """A started one-cluster Engine on the real adapter, and a recorder of its (only) cluster's snapshots; stopped
    on leaving."""
    recorder = Recorder()
    engine = Engine(connect=lambda _target: connect(fleet), state_dir=state_dir)
    engine.subscribe(lambda push: recorder.snapshots.put(push.first))
    engine.start()
    try:
        yield engine, recorder
    finally:
        engine.stop()


def spec_for(fleet: Fleet, sha: str, *, session_id: str, **extra: Any) -> SessionSpec:
    return SessionSpec(
        id=session_id,
        remote_url=fleet.git("remote", "get-url", "origin"),
        branch="main",
        commit=sha,
        repo=str(fleet.work),
        **extra,
    )


# Simulator only: on the real tier, restarting the simulated controllers once failed to finish the second
# session within 30 s in CI (not reproduced locally); superseding itself is server-independent (the manager).
@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_a_newer_push_supersedes_the_older_session(fleet: Fleet) -> None:
    fleet.controllers.stop()  # hold both pushes in flight
    first = fleet.commit_and_push(SCALE_WEB, "first")
    second = fleet.commit_and_push(edit("apps/web.yaml", "replicas: 3", "replicas: 4"), "second")
    with following(fleet) as (engine, recorder):
        engine.add(spec_for(fleet, first, session_id="first"))
        recorder.until("first", SessionState.WAITING_FOR_SOURCE)
        engine.add(spec_for(fleet, second, session_id="second", reconcile=True))
        superseded = recorder.until("first", SessionState.SUPERSEDED)
        assert superseded.message == "superseded by a newer push to the same branch"
        fleet.controllers.start()
        assert recorder.until("second", SessionState.SUCCEEDED).commit == second


def test_a_failure_carries_its_warning_events_in_the_final_snapshot(fleet: Fleet) -> None:
    """The session is final the moment the failure is certain; the Events read after that still reach it."""
    broken = fleet.commit_and_push(BROKEN_YAML, "broken")
    with following(fleet) as (engine, recorder):
        engine.add(spec_for(fleet, broken, session_id="broken", reconcile=True))
        failed = recorder.until("broken", SessionState.FAILED)
        while not next(r for r in failed.resources if r.ref == failed.failed).events:
            failed = recorder.until("broken", SessionState.FAILED)  # the one with the Events follows at once
    apps = next(r for r in failed.resources if r.ref == failed.failed)
    assert apps.ref.name == "apps"
    assert any(e.type == "Warning" and e.reason == "BuildFailed" for e in apps.events)


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_410_mid_watch_lists_again_and_carries_on(fleet: Fleet) -> None:
    assert fleet.cluster.sim is not None
    fleet.controllers.stop()
    sha = fleet.commit_and_push(SCALE_WEB, "Scale web")
    cluster = connect(fleet)
    recorder = Recorder()
    manager = SessionManager(cluster)
    manager.subscribe(recorder.snapshots.put)
    baseline = fleet.cluster.sim.open_watches
    manager.start()
    try:
        manager.add(spec_for(fleet, sha, session_id="s", reconcile=True))
        recorder.until("s", SessionState.WAITING_FOR_SOURCE)
        assert fleet.cluster.sim.wait_for_watches(baseline + len(manager.cache.kinds), timeout=10)
        lists_before = dict(cluster.lists)
        fleet.cluster.sim.expire_watches()  # every open watch ends with ERROR 410 Expired
        fleet.controllers.start()
        assert recorder.until("s", SessionState.SUCCEEDED).commit == sha
        assert all(cluster.lists[kind] > lists_before[kind] for kind in ("GitRepository", "Kustomization"))
    finally:
        manager.stop()
        cluster.close()


def test_a_restart_resumes_active_sessions_and_keeps_the_history(fleet: Fleet, tmp_path: Path) -> None:
    fleet.controllers.stop()
    sha = fleet.commit_and_push(SCALE_WEB, "Scale web")
    store = SessionStore(tmp_path / "state")
    with following(fleet, state_dir=store.directory) as (before, _recorder):
        before.add(spec_for(fleet, sha, session_id="kept", reconcile=True))
    # the app quit mid-session
    assert [spec.id for spec in store.load_active()] == ["kept"]

    with following(fleet, state_dir=store.directory) as (_after, recorder):
        fleet.controllers.start()
        fleet.reconcile_source()
        assert recorder.until("kept", SessionState.SUCCEEDED).commit == sha
    assert store.load_active() == []
    (record,) = store.history()
    assert (record["id"], record["state"]) == ("kept", "succeeded")


# --- pure rules --------------------------------------------------------------------------------------------------

SYNCED = {
    kind: KindState(kind=kind, status=KindStatus.SYNCED)
    for kind in ("GitRepository", "OCIRepository", "Kustomization", "HelmRelease")
}
SPEC = SessionSpec(
    id="s",
    remote_url="ssh://git@github.com/acme/fleet",
    branch="main",
    commit=SHA_NEW,
    created_at=1000.0,
    timeout_seconds=300,
)
NEW, OLD = f"main@sha1:{SHA_NEW}", f"main@sha1:{SHA_OLD}"


def objects(*bodies: dict[str, Any]) -> dict[ObjectRef, Any]:
    parsed = [parse_flux_object(body) for body in bodies]
    return {obj.ref: obj for obj in parsed}


def labelled_release(parent: str) -> dict[str, Any]:
    return helm_release(
        "redis",
        chart_version="20.4.0",
        conditions=[condition("Ready", "True", "InstallSucceeded", "ok")],
        labels={"kustomize.toolkit.fluxcd.io/name": parent, "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
    )


def test_no_verdict_before_every_kind_has_been_read() -> None:
    states = {**SYNCED, "HelmRelease": KindState(kind="HelmRelease", status=KindStatus.SYNCING)}
    world = objects(git_repository(revision=NEW), kustomization("apps", applied=NEW, conditions=ready(NEW)))
    snapshot = evaluate(SPEC, world, states, now=1001.0)
    assert snapshot.state is SessionState.WAITING_FOR_SOURCE
    assert snapshot.message == "reading the cluster (HelmRelease)"
    assert evaluate(SPEC, world, SYNCED, now=1001.0).state is SessionState.SUCCEEDED


def test_a_release_with_no_trace_of_the_commit_waits_for_its_parent() -> None:
    applying = objects(
        git_repository(revision=NEW),
        kustomization("apps", applied=OLD, conditions=ready(OLD)),
        labelled_release("apps"),
    )
    snapshot = evaluate(SPEC, applying, SYNCED, now=1001.0)
    redis = next(r for r in snapshot.resources if r.ref.name == "redis")
    assert (redis.phase, redis.reason) == (Phase.PENDING, "ParentNotApplied")
    applied = objects(
        git_repository(revision=NEW),
        kustomization("apps", applied=NEW, conditions=ready(NEW)),
        labelled_release("apps"),
    )
    assert evaluate(SPEC, applied, SYNCED, now=1001.0).state is SessionState.SUCCEEDED


def test_the_source_must_fetch_before_anything_counts() -> None:
    world = objects(git_repository(revision=OLD), kustomization("apps", applied=OLD, conditions=ready(OLD)))
    snapshot = evaluate(SPEC, world, SYNCED, now=1001.0)
    assert snapshot.state is SessionState.WAITING_FOR_SOURCE
    assert snapshot.message == (
        "waiting for GitRepository/flux-system/fleet to fetch 7d1f6c2 (it has main@sha1:0f9e8d7c)"
    )


def test_a_stalled_source_fails_the_push() -> None:
    source = git_repository(
        revision=OLD,
        conditions=[
            condition("Stalled", "True", "InvalidURL", "invalid URL"),
            condition("Ready", "False", "InvalidURL", "invalid URL"),
        ],
    )
    snapshot = evaluate(SPEC, objects(source), SYNCED, now=1001.0)
    assert snapshot.state is SessionState.FAILED
    assert snapshot.failed == ObjectRef(kind="GitRepository", namespace="flux-system", name="fleet")


def test_forbidden_kinds_are_noted() -> None:
    states = {**SYNCED, "HelmRelease": KindState(kind="HelmRelease", status=KindStatus.FORBIDDEN, message="no")}
    world = objects(git_repository(revision=NEW), kustomization("apps", applied=NEW, conditions=ready(NEW)))
    assert evaluate(SPEC, world, states, now=1001.0).notes == ("HelmRelease: no",)


@pytest.mark.parametrize(
    ("error", "attempt", "low", "high"),
    [
        (WatchExpired("gone"), 1, 0.0, 0.0),
        (ClusterUnreachable("down"), 1, 0.25, 0.5),
        (ClusterUnreachable("down"), 3, 1.0, 2.0),
        (ClusterUnreachable("down"), 50, 1.0, 2.0),  # tried every few seconds: the icon must recover with it
        (ClusterError("500"), 4, 2.0, 4.0),
        (ClusterError("500"), 50, 15.0, 30.0),
        (Forbidden("no"), 1, 30.0, 30.0),
        (KindMissing("no"), 7, 30.0, 30.0),
    ],
)
def test_retry_policy_backs_off_with_jitter(error: Any, attempt: int, low: float, high: float) -> None:
    assert retry_delay(error, attempt, rand=lambda: 0.0) == low
    assert retry_delay(error, attempt, rand=lambda: 1.0) == high


def test_progress_lines_and_tree_in_the_flux_style() -> None:
    world = objects(git_repository(revision=NEW), kustomization("apps", applied=NEW, conditions=ready(NEW)))
    done = evaluate(SPEC, world, SYNCED, now=1002.5)
    lines = progress_lines(None, done)
    assert lines[0] == "► following 7d1f6c2 (no subject) on ssh://git@github.com/acme/fleet main"
    assert "✔ GitRepository/flux-system/fleet ready at main@sha1:7d1f6c2a" in lines
    assert lines[-1] == "✔ 7d1f6c2 deployed: 2 resources ready (2.5s)"
    drawn = tree(done).splitlines()
    assert drawn[-2] == "2 ready · 0 progressing · 0 failed · 0 pending"
    assert "\033[" not in "".join(drawn)  # no colour unless asked


def test_stop_joins_every_thread(fleet: Fleet) -> None:
    cluster = connect(fleet)
    manager = SessionManager(cluster)
    manager.start()
    assert {t.name for t in threading.enumerate() if t.name.startswith("fluxmon-")} == {
        "fluxmon-sessions",
        "fluxmon-ancestry",
        "fluxmon-watch-gitrepository",
        "fluxmon-watch-ocirepository",
        "fluxmon-watch-kustomization",
        "fluxmon-watch-helmrelease",
        "fluxmon-watch-helmchart",  # the default kinds, from core/config.py: HelmChart too
    }
    manager.stop()
    cluster.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("fluxmon-")] == []


def test_status_is_not_structure_but_specs_and_inventories_are() -> None:
    """What the cache counts as a plan-changing write (FluxObject.structure)."""

    def structure(**changes: Any) -> Any:
        return parse_flux_object(kustomization("apps", **changes)).structure

    base = structure(applied=OLD, conditions=ready(OLD))
    assert structure(applied=NEW, conditions=ready(NEW), observed=2) == base  # a status write
    assert structure(applied=OLD, conditions=ready(OLD), path="./other") != base
    assert structure(applied=OLD, conditions=ready(OLD), depends_on=("infra",)) != base
    assert (
        structure(applied=OLD, conditions=ready(OLD), inventory=("apps_redis_helm.toolkit.fluxcd.io_HelmRelease",))
        != base
    )


def test_a_session_keeps_its_plan_until_the_structure_changes() -> None:
    session = Session(SPEC)
    before = objects(git_repository(revision=NEW), kustomization("apps", applied=OLD, conditions=ready(OLD)))
    assert [r.ref.name for r in session.advance(before, SYNCED, 1001.0, structure=1).resources] == ["fleet", "apps"]
    after = {**before, **objects(kustomization("infra", applied=OLD, conditions=ready(OLD)))}
    # Same structure version: the plan made at version 1 stands (a status write could not have added infra).
    assert [r.ref.name for r in session.advance(after, SYNCED, 1002.0, structure=1).resources] == ["fleet", "apps"]
    snapshot = session.advance(after, SYNCED, 1003.0, structure=2)
    assert [r.ref.name for r in snapshot.resources] == ["fleet", "apps", "infra"]
    assert snapshot.state is SessionState.RECONCILING


def test_the_cache_counts_structure_changes_but_not_status_writes(fleet: Fleet) -> None:
    changed = threading.Event()
    cluster = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    cache = ClusterCache(cluster, ("Kustomization",), on_change=changed.set)
    kustomizations = fleet.cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")

    def next_version(predicate: Callable[[FluxObject], bool]) -> int:
        """Wait (on the cache's change events) until the apps Kustomization satisfies `predicate`."""
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_SECONDS
        while True:
            found, version = cache.snapshot()
            apps = found.get(ObjectRef(kind="Kustomization", namespace="flux-system", name="apps"))
            if apps is not None and predicate(apps):
                return version
            assert changed.wait(max(deadline - time.monotonic(), 0.01)), "the cache saw no change"
            changed.clear()

    fleet.controllers.stop()  # only this test writes
    cache.start()
    try:
        listed = next_version(lambda apps: True)
        fleet.cluster.admin.patch_status(kustomizations, "flux-system", "apps", {"lastAttemptedRevision": "x@sha1:1"})
        assert next_version(lambda apps: apps.last_attempted_revision == "x@sha1:1") == listed
        fleet.cluster.admin.patch(kustomizations, "flux-system", "apps", {"spec": {"path": "./elsewhere"}})
        assert next_version(lambda apps: apps.path == "./elsewhere") == listed + 1
    finally:
        cache.stop()
        cluster.close()


def values_error_release(*, failing_since: str) -> dict[str, Any]:
    """helm-controller's shape for a values error (helm-controller internal/controller/helmrelease_controller.go)."""
    failure = condition(
        "Ready",
        "False",
        "ValuesError",
        "could not resolve Secret chart values reference 'apps/redis-values' with key 'values.yaml': not found",
    )
    failure["lastTransitionTime"] = failing_since
    release = labelled_release("apps")
    release["status"]["conditions"] = [
        condition("Reconciling", "True", "Progressing", "Fulfilling prerequisites"),
        failure,
    ]
    return release


def test_a_release_failure_older_than_the_push_is_not_the_push_s_failure() -> None:
    # The push may add the missing Secret: until the release says something new, it has not failed this push.
    spec = replace(SPEC, created_at=1_700_000_000.5)
    before, after = "2023-11-14T22:13:19Z", "2023-11-14T22:13:20Z"  # the push's own second counts as after
    world = objects(
        git_repository(revision=NEW),
        kustomization("apps", applied=NEW, conditions=ready(NEW)),
        values_error_release(failing_since=before),
    )
    snapshot = evaluate(spec, world, SYNCED, now=spec.created_at + 1)
    redis = next(r for r in snapshot.resources if r.ref.name == "redis")
    assert snapshot.state is SessionState.RECONCILING
    assert redis.phase is Phase.PENDING
    assert redis.message.startswith("failing since before this push, which may fix it: could not resolve Secret")
    world = objects(
        git_repository(revision=NEW),
        kustomization("apps", applied=NEW, conditions=ready(NEW)),
        values_error_release(failing_since=after),
    )
    snapshot = evaluate(spec, world, SYNCED, now=spec.created_at + 1)
    assert snapshot.state is SessionState.FAILED
    assert snapshot.failed == ObjectRef(kind="HelmRelease", namespace="apps", name="redis")


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_a_failures_events_are_only_those_of_the_revision_it_tried(fleet: Fleet) -> None:
    """An older failure's Warning events on the same object are history, not this push's error."""
    unhealthy = fleet.push(UNHEALTHY_WEB, "an unhealthy web")
    fleet.wait_phases(unhealthy, {"Kustomization/apps": Phase.FAILED})
    broken = fleet.commit_and_push(BROKEN_YAML, "broken")
    with following(fleet) as (engine, recorder):
        engine.add(spec_for(fleet, broken, session_id="broken", reconcile=True))
        failed = recorder.until("broken", SessionState.FAILED)
    apps = next(r for r in failed.resources if r.ref == failed.failed)
    assert apps.events, "the BuildFailed event of the pushed commit"
    # The details window shows the Warning ones; the unhealthy commit's HealthCheckFailed must not be among them.
    assert {event.reason for event in apps.events if event.type == "Warning"} == {"BuildFailed"}
    assert all(event.revision.endswith(broken) for event in apps.events)


def missing_branch_source(*, failing_since: str, handled_at: str = "") -> dict[str, Any]:
    """source-controller's shape for a branch that does not exist (yet): the push may be what creates it
    (source-controller internal/controller/gitrepository_controller.go, GitOperationFailed)."""
    message = "failed to checkout and determine revision: unable to clone: couldn't find remote ref refs/heads/main"
    body = git_repository(
        revision=OLD,
        conditions=[
            condition("Reconciling", "True", "ProgressingWithRetry", "reconciliation in progress"),
            condition("Ready", "False", "GitOperationFailed", message),
            condition("FetchFailed", "True", "GitOperationFailed", message),
        ],
    )
    for cond in body["status"]["conditions"]:
        cond["lastTransitionTime"] = failing_since
    if handled_at:
        body["status"]["lastHandledReconcileAt"] = handled_at
    return body


def test_a_source_failure_older_than_the_push_waits_for_the_source_to_try_again() -> None:
    spec = replace(SPEC, created_at=1_700_000_000.5)
    before = "2023-11-14T22:13:19Z"
    world = objects(missing_branch_source(failing_since=before), kustomization("apps", conditions=ready(OLD)))
    snapshot = evaluate(spec, world, SYNCED, now=spec.created_at + 1)
    assert snapshot.state is not SessionState.FAILED, snapshot.message
    source = next(r for r in snapshot.resources if r.ref.kind == "GitRepository")
    assert source.phase is Phase.PENDING
    assert source.message.startswith("failing since before this push, which may fix it: failed to checkout")
    # The session's own reconcile request, handled after the push (a token as `flux reconcile` writes it): the
    # source has tried again, so the failure is this push's.
    tried_again = missing_branch_source(failing_since=before, handled_at="2023-11-14T22:13:21.123456789Z")
    snapshot = evaluate(spec, objects(tried_again, kustomization("apps", conditions=ready(OLD))), SYNCED, now=1.7e9)
    assert snapshot.state is SessionState.FAILED
    assert snapshot.failed == ObjectRef(kind="GitRepository", namespace="flux-system", name="fleet")


def test_a_stalled_source_fails_the_push_however_old_the_failure() -> None:
    spec = replace(SPEC, created_at=1_700_000_000.5)
    stalled = condition("Stalled", "True", "InvalidURL", "invalid URL")
    failed = condition("Ready", "False", "InvalidURL", "invalid URL")
    for cond in (stalled, failed):
        cond["lastTransitionTime"] = "2023-01-01T00:00:00Z"
    world = objects(git_repository(revision=OLD, conditions=[stalled, failed]))
    assert evaluate(spec, world, SYNCED, now=spec.created_at + 1).state is SessionState.FAILED


def test_a_release_retrying_an_upgrade_shows_the_failure_s_hint_at_once() -> None:
    world = objects(git_repository(revision=NEW), failed_upgrade(retries=3, failures=1))
    snapshot = evaluate(SPEC, world, SYNCED, now=1001.0)
    web = next(r for r in snapshot.resources if r.ref.name == "web")
    assert snapshot.state is SessionState.RECONCILING
    assert web.message.startswith("upgrade failed, retry 1 of 3: ")
    assert web.hint is not None
    assert web.retrying  # so that the tooltip says it too (test_overview)
