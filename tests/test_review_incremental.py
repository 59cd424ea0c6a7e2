"""Adversarial review of the incremental engine (issue #16): cases where evaluating only the sessions a write can
change, and sleeping until the next deadline, could give a late or wrong answer."""

from __future__ import annotations

import contextlib
import json
import queue
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fluxmon.core import plan as plan_module
from fluxmon.core.ancestry import Lineage, Question, Relation
from fluxmon.core.cluster import FluxEvent, KindApi
from fluxmon.core.engine import Engine
from fluxmon.core.informer import ClusterCache, KindState, KindStatus
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.objects import FluxObject, GitRef, ObjectRef, parse_flux_object
from fluxmon.core.plan import (
    ObjectIndex,
    Plan,
    Push,
    dependencies_by_dependent,
    not_followed_message,
    plan_for_push,
    source_follows,
)
from fluxmon.core.session import Session, SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.verdict import Phase
from fluxmon.sim.client import KubeClient
from tests.flux_bodies import (
    GIT_CHART,
    SHA_NEW,
    SHA_OLD,
    condition,
    git_repository,
    helm_release,
    kustomization,
    ready,
)
from tests.test_incremental import (
    API_VERSIONS,
    FLEET,
    OTHER,
    SNAPSHOT_TIMEOUT_SECONDS,
    Pushes,
    fleet_server,
    following_all,
    push,
)

DENIED = ("patch", "gitrepositories")
"""A GitRepository itself may not be patched (its status may): as RBAC without patch on sources."""


@contextlib.contextmanager
def engine_without_patch_rights(tmp_path: Path) -> Iterator[tuple[KubeClient, Engine, Pushes]]:
    """The fleet on the simulated API server, where nobody may patch a GitRepository itself (only its status): a
    reconcile request for a source is refused with 403, as for a user whose RBAC lacks it."""
    denied = fleet_server(tmp_path, lambda _user, verb, _group, resource, _namespace: (verb, resource) != DENIED)
    with denied as (client, kubeconfig):
        pushes = Pushes()
        engine = Engine(connect=lambda _target: Cluster.connect(kubeconfig=str(kubeconfig)))
        try:
            engine.subscribe(pushes.on_push)
            engine.start()
            yield client, engine, pushes
        finally:
            engine.stop()


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


class SlowEventsCluster(Cluster):
    """The real adapter on a server that takes long to list Events: the manager's clock moves on by `delay` while
    it waits (a clock moved on, so that the test need not wait out a timeout)."""

    clock_offset: list[float]
    delay: float

    def events(self, ref: ObjectRef, *, limit: int = 20) -> list[FluxEvent]:
        self.clock_offset[0] += self.delay
        return super().events(ref, limit=limit)


def test_a_timeout_that_passes_during_a_slow_evaluation_still_ends_the_session(tmp_path: Path) -> None:
    """An upstream dependency fails (its Events are read, slowly: the session's timeout passes meanwhile) and then
    nothing is written: the session times out all the same (the deadline was dropped as already past)."""
    timeout = 600.0
    offset = [0.0]
    with fleet_server(tmp_path) as (client, kubeconfig):
        base = Cluster.connect(kubeconfig=str(kubeconfig))
        cluster = SlowEventsCluster.__new__(SlowEventsCluster)
        cluster.__dict__.update(base.__dict__)
        cluster.clock_offset, cluster.delay = offset, timeout
        manager = SessionManager(cluster, clock=lambda: time.time() + offset[0])
        snapshots: queue.Queue[SessionSnapshot] = queue.Queue()
        manager.subscribe(snapshots.put)
        manager.start()
        try:
            manager.add(replace(push("fleet-push", FLEET), created_at=time.time(), timeout_seconds=timeout))
            until(snapshots, "every followed object", following_all)
            client.patch_status(
                client.resource(API_VERSIONS["Kustomization"], "Kustomization"),
                "flux-system",
                "infra",
                {
                    "lastAttemptedRevision": f"main@sha1:{SHA_NEW}",  # failed at the commit the session judges by
                    "conditions": [condition("Ready", "False", "BuildFailed", "kustomize build failed")],
                },
            )
            failed = until(
                snapshots,
                "the upstream failure",
                lambda snapshot: any(r.ref.name == "infra" and r.phase is Phase.FAILED for r in snapshot.resources),
            )
            assert not failed.state.final
            until(snapshots, "the timeout", lambda snapshot: snapshot.state is SessionState.TIMED_OUT)
        finally:
            manager.stop()
            cluster.close()


def until(
    snapshots: queue.Queue[SessionSnapshot], description: str, holds: Callable[[SessionSnapshot], bool]
) -> SessionSnapshot:
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_SECONDS
    while True:
        try:
            snapshot = snapshots.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"the session never showed {description}")
        if holds(snapshot):
            return snapshot


# --- discovery: the indexed plan_for_push gives the plans the scan did ------------------------------------------


def reference_plan_for_push(objects: Iterable[FluxObject], push: Push, *, base_dir: str | None = None) -> Plan:
    """REFERENCE ONLY: plan_for_push as it was before the ObjectIndex (core/plan.py at 87fe51a), a scan of every
    object per push, kept here verbatim (but for the helpers it shares with today's) to compare against."""
    by_ref: dict[ObjectRef, FluxObject] = {obj.ref: obj for obj in objects}
    sources = sorted(ref for ref, obj in by_ref.items() if source_follows(obj, push, base_dir=base_dir))
    if not sources:
        return Plan(notes=(not_followed_message(by_ref.values(), push, base_dir=base_dir),))
    source_set = set(sources)
    edges: set[tuple[ObjectRef, ObjectRef]] = set()
    kustomizations = {
        ref for ref, obj in by_ref.items() if obj.kind == "Kustomization" and obj.source_ref in source_set
    }
    dependents: dict[ObjectRef, set[ObjectRef]] = {}
    for ref, obj in by_ref.items():
        for dependency in obj.depends_on:
            dependents.setdefault(dependency, set()).add(ref)
            edges.add((ref, dependency))
    kustomizations |= {ref for ref in plan_module._closure(kustomizations, dependents) if ref.kind == "Kustomization"}
    helm_releases = set()
    for ref, obj in by_ref.items():
        if obj.kind == "HelmRelease" and (reference_chart_from(obj, by_ref, source_set) or obj.owner in kustomizations):
            helm_releases.add(ref)
    for ref in kustomizations:
        for child in by_ref[ref].applied_flux_objects:
            edges.add((child, ref))
            if child.kind == "HelmRelease" and child in by_ref:
                helm_releases.add(child)
    helm_releases |= {ref for ref in plan_module._closure(helm_releases, dependents) if ref.kind == "HelmRelease"}
    followed = set(sources) | kustomizations | helm_releases
    for ref in followed:
        source_ref = by_ref[ref].source_ref if ref in by_ref else None
        if source_ref is not None and source_ref in by_ref:
            edges.add((ref, source_ref))
    upstream = {dep for dependent, dep in edges if dependent in followed and dep not in followed and dep in by_ref}
    outgoing = dependencies_by_dependent(edges)
    return Plan(
        sources=tuple(sources),
        kustomizations=tuple(sorted(kustomizations)),
        helm_releases=tuple(sorted(helm_releases)),
        upstream=tuple(sorted(upstream)),
        edges=tuple(sorted(edge for edge in edges if edge[0] in followed)),
        touched=plan_module._touched(kustomizations, by_ref, push.changed_paths),
        cycles=plan_module._cycles({ref: [d for d in outgoing.get(ref, []) if d.kind == ref.kind] for ref in followed}),
    )


def reference_chart_from(release: FluxObject, by_ref: Mapping[ObjectRef, FluxObject], sources: set[ObjectRef]) -> bool:
    """REFERENCE ONLY: core/plan.py's _chart_from at 87fe51a."""
    ref = release.source_ref
    if ref is None:
        return False
    if ref in sources:
        return True
    chart = by_ref.get(ref) if ref.kind == "HelmChart" else None
    return chart is not None and chart.source_ref in sources


PLAN_KINDS = ("GitRepository", "OCIRepository", "Kustomization", "HelmRelease", "HelmChart", "HelmRepository")


def random_objects(rng: random.Random) -> list[FluxObject]:
    """A small cluster where names collide on purpose: refs that name missing objects, other kinds, cycles."""

    def some_ref(kinds: tuple[str, ...] = PLAN_KINDS) -> ObjectRef:
        namespace = "apps" if rng.random() < 0.2 else "flux-system"
        return ObjectRef(kind=rng.choice(kinds), namespace=namespace, name=rng.choice("abc"))

    objects = []
    for _ in range(rng.randint(0, 24)):
        ref = some_ref()
        labels = (
            (
                ("kustomize.toolkit.fluxcd.io/name", ref.name if rng.random() < 0.3 else rng.choice("abcd")),
                ("kustomize.toolkit.fluxcd.io/namespace", rng.choice(("flux-system", "apps"))),
            )
            if rng.random() < 0.5
            else ()
        )
        objects.append(
            FluxObject(
                ref=ref,
                api_version="v1",
                labels=labels,
                url=rng.choice((FLEET, OTHER, f"{FLEET}.git", "")),
                git_ref=rng.choice((None, GitRef(branch="main"), GitRef(branch="dev"), GitRef(tag="v1"))),
                origin_url=rng.choice(("", FLEET)),
                origin_revision=rng.choice(("", "main@sha1:abc", "dev@sha1:abc")),
                source_ref=rng.choice((some_ref(), some_ref(("GitRepository", "OCIRepository", "HelmChart")), None)),
                path=rng.choice(("", "./apps", "infra")),
                depends_on=tuple(some_ref() for _ in range(rng.randint(0, 3))),
                applied_flux_objects=tuple(some_ref() for _ in range(rng.randint(0, 3))),
            )
        )
    return objects


@pytest.mark.parametrize("seed", range(40))
def test_the_indexed_plan_is_the_plan_the_scan_made(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 (repeatable cases, not secrets)
    for _ in range(100):
        objects = random_objects(rng)
        push_ = Push(
            remote_url=FLEET,
            branch=rng.choice(("main", "dev")),
            commit=SHA_NEW,
            changed_paths=rng.choice((None, ("apps/web.yaml",), ("infra/x.yaml", "README.md"))),
        )
        expected = reference_plan_for_push(objects, push_)
        assert plan_for_push(objects, push_) == expected
        assert plan_for_push(ObjectIndex.of(objects), push_) == expected


# --- paging: a continue token that expired mid-list ---------------------------------------------------------------


class ExpiringPagesCluster(Cluster):
    """The real adapter in pages of two, whose first continue token has expired: the API server's 410 for it (etcd
    compacted past the list's resourceVersion, apiserver's storage "continue parameter is too old"), which cannot
    be forced on a server in a test's time; every other page is the server's own."""

    page_size = 2
    pages: list[str]

    def _list_page(self, api: KindApi, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.pages.append(token)
        if token and len(self.pages) == 2:
            message = "The provided continue parameter is too old to display a consistent list result."
            error = ApiException(status=410, reason="Gone")
            error.body = json.dumps({"kind": "Status", "code": 410, "reason": "Expired", "message": message})
            raise self._translate_api_exception(error, f"list {api.qualified}", "list", api.qualified)
        return super()._list_page(api, token)


def test_a_continue_token_that_expires_mid_list_lists_again_and_keeps_no_half_list(tmp_path: Path) -> None:
    with fleet_server(tmp_path) as (_client, kubeconfig):
        base = Cluster.connect(kubeconfig=str(kubeconfig))
        cluster = ExpiringPagesCluster.__new__(ExpiringPagesCluster)
        cluster.__dict__.update(base.__dict__)
        cluster.pages = []
        seen: list[int] = []
        cache = ClusterCache(cluster, ("GitRepository",), on_change=lambda: seen.append(len(cache.objects())))
        cache.start()
        try:
            assert cache.wait_until(lambda: cache.states()["GitRepository"].status is KindStatus.SYNCED, 10.0)
            names = sorted(ref.name for ref in cache.objects())
        finally:
            cache.stop()
            cluster.close()
    assert names == ["fleet", "infra", "other"]
    first, expired, again, rest = cluster.pages  # the second page's token expired: listed again from the start
    assert (first, again) == ("", "")
    assert expired == rest != ""
    assert seen
    assert all(count == len(names) for count in seen), seen  # the cache never held the first page alone


# --- the manager's sleep and the wall clock -----------------------------------------------------------------------


def test_a_timeout_passed_while_the_computer_slept_ends_the_session_soon_after_it_wakes(tmp_path: Path) -> None:
    """Timeouts are wall-clock times, while the worker sleeps on the monotonic clock, which stops while a laptop
    is suspended: after a suspend the wall clock has jumped, and a session past its timeout must end soon, not
    when the rest of its sleep has run on the monotonic clock (here the clock jumps as it does on resume)."""
    timeout = 600.0
    offset = [0.0]
    with fleet_server(tmp_path) as (_client, kubeconfig):
        cluster = Cluster.connect(kubeconfig=str(kubeconfig))
        manager = SessionManager(cluster, clock=lambda: time.time() + offset[0])
        snapshots: queue.Queue[SessionSnapshot] = queue.Queue()
        manager.subscribe(snapshots.put)
        manager.start()
        try:
            manager.add(replace(push("fleet-push", FLEET), created_at=time.time(), timeout_seconds=timeout))
            until(snapshots, "every followed object", following_all)
            offset[0] += 2 * timeout  # the lid was closed for twenty minutes
            until(snapshots, "the timeout", lambda snapshot: snapshot.state is SessionState.TIMED_OUT)
        finally:
            manager.stop()
            cluster.close()


# --- a session judged incrementally says what one judged afresh says ----------------------------------------------


SHA_NEWER = "9" * 40
"""A commit after the push, which git says contains it (the `overtaken` path)."""


class Answers:
    """Git's answers as core.ancestry gives them: SHA_NEWER contains the push, SHA_OLD is older."""

    def lookup(self, question: Question) -> Lineage | None:
        if question.seen == SHA_NEWER:
            return Lineage(relation=Relation.CONTAINS, commit=SHA_NEWER)
        return Lineage(relation=Relation.OLDER, commit=question.seen) if question.seen == SHA_OLD else None


def random_shape(rng: random.Random) -> dict[str, Any]:
    """What a plan reads of an object (its kind, spec and owner labels), drawn at random among the fleet's."""
    return {
        "kind": rng.choice(("GitRepository", "Kustomization", "Kustomization", "HelmRelease", "HelmChart")),
        "url": rng.choice((FLEET, OTHER)),
        "source": rng.choice(("a", "b", "c")),
        "depends_on": tuple(rng.sample("abc", rng.randint(0, 2))),
        "inventory": tuple(f"apps_{n}_helm.toolkit.fluxcd.io_HelmRelease" for n in rng.sample("abc", 1)),
        "chart": rng.choice((GIT_CHART, None, {"kind": "HelmChart", "name": rng.choice("abc")})),
        "chart_source": rng.choice(("GitRepository", "Bucket")),
        "owner": rng.choice(("a", "b", "c", "")),
    }


def random_body(rng: random.Random, name: str, shape: dict[str, Any]) -> dict[str, Any]:
    """A Flux object of that shape in a random state: revisions old, pushed or newer; ready, failed or working."""
    revision = f"main@sha1:{rng.choice((SHA_OLD, SHA_NEW, SHA_NEWER))}"
    conditions = rng.choice(
        (
            ready(revision),
            [condition("Ready", "False", "BuildFailed", "kustomize build failed")],
            [condition("Ready", "Unknown", "Progressing", "working")],
            [],
        )
    )
    if shape["kind"] == "GitRepository":
        return git_repository(name, url=shape["url"], revision=revision, conditions=conditions or None)
    if shape["kind"] == "Kustomization":
        return kustomization(
            name,
            source=shape["source"],
            depends_on=shape["depends_on"],
            applied=f"main@sha1:{rng.choice((SHA_OLD, SHA_NEW))}",
            attempted=revision,
            conditions=conditions,
            inventory=shape["inventory"],
        )
    if shape["kind"] == "HelmChart":  # what a chartRef may name (test_verdict.py has the rule)
        return {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": name, "namespace": "apps", "generation": 1},
            "spec": {"chart": "./charts/web", "sourceRef": {"kind": shape["chart_source"], "name": shape["source"]}},
            "status": {"observedGeneration": 1, "artifact": {"revision": f"1.0.0+{revision[-40:][:12]}"}},
        }
    owner = {"kustomize.toolkit.fluxcd.io/name": shape["owner"], "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
    release = helm_release(
        name,
        chart_source=shape["chart"] if shape["chart"] is None or shape["chart"]["kind"] != "HelmChart" else None,
        chart_version=rng.choice(("1.0.0", f"1.0.0+{SHA_NEW[:12]}", None)),
        conditions=conditions,
        labels=owner if shape["owner"] else None,
    )
    if shape["chart"] is not None and shape["chart"]["kind"] == "HelmChart":
        del release["spec"]["chart"]
        release["spec"]["chartRef"] = shape["chart"]
    return release


@pytest.mark.parametrize("seed", range(20))
def test_a_session_judged_on_writes_alone_says_what_a_fresh_judgement_says(seed: int) -> None:
    """The manager's rule in small: a session is judged again when an object it reads is written, or when any
    object is added, removed or changed in structure; between those it keeps its snapshot. Each step, that kept or
    new snapshot must say what judging every object afresh says."""
    rng = random.Random(seed)  # noqa: S311 (repeatable cases, not secrets)
    spec = SessionSpec(id="s", remote_url=FLEET, branch="main", commit=SHA_NEW, repo="/r", timeout_seconds=600)
    states = {kind: KindState(kind=kind, status=KindStatus.SYNCED) for kind in spec.monitor_types}
    cluster: dict[ObjectRef, FluxObject] = {}
    session = Session(spec, ancestry=Answers())
    structure = 0
    shapes: dict[str, dict[str, Any]] = {}
    for step in range(300):
        name = rng.choice("abcdef")
        if name not in shapes or rng.random() < 0.15:
            shapes[name] = random_shape(rng)  # a spec change, a new object, or one of another kind
        obj = parse_flux_object(random_body(rng, name, shapes[name]))
        old = cluster.get(obj.ref)
        if old is not None and rng.random() < 0.1:
            del cluster[obj.ref]
            structural = True
        else:
            cluster[obj.ref] = obj
            structural = old is None or old.structure != obj.structure
        structure += structural
        if structural or session.snapshot is None or obj.ref in session.reads:
            if session.needs_plan(structure):
                seen: Mapping[ObjectRef, FluxObject] = dict(cluster)
            else:
                seen = {ref: cluster[ref] for ref in session.reads if ref in cluster}
            session.advance(seen, states, 1.0, structure=structure)
        fresh = Session(spec, ancestry=Answers()).advance(dict(cluster), states, 1.0)
        assert session.snapshot is not None
        assert said(session.snapshot) == said(fresh), f"step {step}: wrote {obj.ref}"
        if fresh.state.final:
            session = Session(spec, ancestry=Answers())  # a final state sticks: the next push, on this cluster


def said(snapshot: SessionSnapshot) -> tuple[object, ...]:
    return (
        snapshot.state,
        snapshot.message,
        snapshot.notes,
        tuple((r.ref, r.role, r.phase, r.reason, r.message, r.revision, r.parent) for r in snapshot.resources),
    )
