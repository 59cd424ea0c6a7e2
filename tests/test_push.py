"""One push across clusters (core.push): the outcome rules of issue #13, its record, and how a terminal shows it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fluxmon.core.health import ClusterHealth
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.objects import ObjectRef
from fluxmon.core.push import PushSnapshot, combine, pending
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.store import SessionStore, push_from_record, push_record
from fluxmon.core.terminal import push_final_line, push_progress_lines, push_tree, tree
from fluxmon.core.verdict import Phase
from tests.flux_bodies import SHA_NEW

APPS = ObjectRef(kind="Kustomization", namespace="flux-system", name="apps")
S = SessionState


def on(context: str, state: SessionState, *, message: str = "", at: float = 10.0) -> SessionSnapshot:
    """The push's session on one cluster, in `state`, with one Kustomization in the matching phase."""
    phase = {S.SUCCEEDED: Phase.READY, S.FAILED: Phase.FAILED}.get(state, Phase.PROGRESSING)
    return SessionSnapshot(
        id="push",
        state=state,
        message=message or f"{state.value} there",
        commit=SHA_NEW,
        branch="main",
        remote="https://example.com/fleet.git",
        subject="scale web",
        repo="",
        started_at=0.0,
        updated_at=at,
        ended_at=at if state.final else None,
        resources=(
            ResourceStatus(
                ref=APPS,
                role=Role.KUSTOMIZATION,
                phase=phase,
                reason="BuildFailed" if phase is Phase.FAILED else "",
                message="kustomize build failed" if phase is Phase.FAILED else "",
                revision=f"main@sha1:{SHA_NEW}",
                since=0.0,
                seconds_in_phase={},
            ),
        ),
        failed=APPS if state is S.FAILED else None,
        context=context,
    )


def test_one_cluster_is_that_clusters_session_word_for_word() -> None:
    only = on("kind-dev", S.FAILED, message="Kustomization flux-system/apps failed: BuildFailed")
    push = combine([only])
    assert (push.state, push.message, push.failed, push.failed_on) == (S.FAILED, only.message, APPS, "kind-dev")
    assert not push.several
    assert push_tree(push) == tree(only)
    assert push_final_line(push) == push_progress_lines(None, push)[-1]


def test_failed_as_soon_as_one_cluster_fails_naming_it_while_the_others_go_on() -> None:
    push = combine([on("dev", S.SUCCEEDED), on("prod", S.FAILED, message="apps BuildFailed"), on("qa", S.RECONCILING)])
    assert push.state is S.FAILED
    assert push.state.final
    assert push.message == "failed on prod: apps BuildFailed"
    assert (push.failed_on, push.failed) == ("prod", APPS)
    assert not push.settled, "qa is still followed, for the report"
    assert push.summary() == "deployed to dev · failed on prod · qa progressing"


def test_the_first_cluster_to_fail_is_the_one_named() -> None:
    push = combine([on("dev", S.FAILED, at=20.0), on("prod", S.FAILED, at=12.0)])
    assert push.failed_on == "prod"
    assert push.ended_at == 12.0


def test_deployed_only_when_every_cluster_that_follows_it_applied_it() -> None:
    on_the_way = combine([on("dev", S.SUCCEEDED), on("prod", S.RECONCILING)])
    assert (on_the_way.state, on_the_way.message) == (S.RECONCILING, "deployed to dev · prod progressing")
    done = combine([on("dev", S.SUCCEEDED), on("prod", S.SUCCEEDED, at=30.0)])
    assert (done.state, done.message, done.ended_at) == (S.SUCCEEDED, "deployed to dev, prod", 30.0)


def test_a_cluster_that_does_not_follow_it_is_shown_and_not_counted() -> None:
    prod = on("prod", S.NOT_DEPLOYED, message="no Flux source follows https://example.com/fleet.git main")
    push = combine([on("dev", S.SUCCEEDED), prod])
    assert (push.state, push.message) == (S.SUCCEEDED, "deployed to dev · prod not followed")


def test_not_deployed_only_when_no_cluster_follows_it() -> None:
    push = combine([on("dev", S.NOT_DEPLOYED, message="no source"), on("prod", S.NOT_DEPLOYED, message="none")])
    assert push.state is S.NOT_DEPLOYED
    assert push.message == "no cluster follows it: dev: no source; prod: none"


def test_a_cluster_still_on_its_way_at_the_timeout_times_the_push_out() -> None:
    push = combine([on("dev", S.SUCCEEDED), on("prod", S.TIMED_OUT)])
    assert (push.state, push.message) == (S.TIMED_OUT, "deployed to dev · prod timed out")


def test_an_unreachable_cluster_on_its_way_says_so_and_holds_back_no_failure() -> None:
    unreachable = ClusterHealth(
        context="prod",
        kinds=(KindState(kind="GitRepository", status=KindStatus.UNREACHABLE, message="connection refused"),),
        problem="cannot reach prod",
    )
    prod = replace(on("prod", S.WAITING_FOR_SOURCE), cluster=unreachable)
    assert combine([on("dev", S.SUCCEEDED), prod]).message == "deployed to dev · prod unreachable"
    assert combine([on("dev", S.FAILED), prod]).state is S.FAILED
    gone = replace(on("prod", S.TIMED_OUT), cluster=unreachable)
    assert combine([on("dev", S.SUCCEEDED), gone]).message == "deployed to dev · prod unreachable (timed out)"


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        ((S.SUPERSEDED, S.SUPERSEDED), S.SUPERSEDED),
        ((S.SUCCEEDED, S.CANCELLED), S.CANCELLED),
        ((S.TIMED_OUT, S.SUPERSEDED), S.SUPERSEDED),
        ((S.WAITING_FOR_SOURCE, S.SUCCEEDED), S.WAITING_FOR_SOURCE),
    ],
)
def test_the_other_outcomes(states: tuple[SessionState, SessionState], outcome: SessionState) -> None:
    assert combine([on("dev", states[0]), on("prod", states[1])]).state is outcome


def test_a_push_record_keeps_every_cluster_and_reads_back() -> None:
    push = combine([on("dev", S.SUCCEEDED), on("prod", S.FAILED, message="apps BuildFailed")])
    record = json.loads(json.dumps(push_record(push)))
    assert (record["state"], record["failed_on"], record["failed"]) == ("failed", "prod", str(APPS))
    assert [(c["context"], c["state"]) for c in record["clusters"]] == [("dev", "succeeded"), ("prod", "failed")]
    assert [(r["context"], r["phase"]) for r in record["resources"]] == [("dev", "Ready"), ("prod", "Failed")]
    back = push_from_record(record)
    assert (back.state, back.message, back.failed_on) == (push.state, push.message, "prod")
    assert [(c.context, c.state, c.resources[0].phase) for c in back.clusters] == [
        ("dev", S.SUCCEEDED, Phase.READY),
        ("prod", S.FAILED, Phase.FAILED),
    ]


def test_a_history_record_from_before_clusters_reads_as_one_cluster() -> None:
    record = push_record(combine([on("", S.SUCCEEDED)]))
    del record["clusters"], record["failed_on"]
    for resource in record["resources"]:
        del resource["context"]
    old = push_from_record(record)
    assert (old.state, len(old.clusters), old.first.resources[0].ref) == (S.SUCCEEDED, 1, APPS)


def test_the_store_marks_an_outcome_untold_until_told(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state")
    push = combine([on("dev", S.SUCCEEDED), on("prod", S.FAILED)])
    store.untell(push.id)
    store.finish(push)
    assert [p.failed_on for p in store.untold()] == ["prod"]
    store.told(push.id)
    assert store.untold() == []


def test_several_clusters_in_a_terminal_each_under_its_name() -> None:
    first = combine([on("dev", S.RECONCILING), on("prod", S.RECONCILING)])
    then = combine([on("dev", S.SUCCEEDED), on("prod", S.FAILED, message="apps BuildFailed")])
    lines = push_progress_lines(None, first) + push_progress_lines(first, then)
    assert lines[0].startswith("► following ")
    assert lines[0].endswith(" main in dev, prod")
    assert any(line.startswith("✔ dev: Kustomization/flux-system/apps ready") for line in lines)
    assert any(line.startswith("✗ prod: apps BuildFailed") for line in lines), "the failed cluster's own line"
    assert lines[-1].startswith("✗ main@7d1f6c2 deployed to dev · failed on prod (")
    assert sum("apps BuildFailed" in line for line in lines) == 1, "the error is said once"
    shown = push_tree(then)
    assert "dev: succeeded" in shown
    assert "prod: failed" in shown
    assert "deployed to dev · failed on prod" in shown


def test_a_push_is_made_of_one_cluster_at_least() -> None:
    with pytest.raises(ValueError, match="one cluster at least"):
        combine([])
    assert isinstance(combine([on("dev", S.SUCCEEDED)]), PushSnapshot)


def test_the_failed_object_is_known_on_a_cluster_without_a_context_name() -> None:
    """In-cluster, or a kubeconfig context named "": the failure must still name its object."""
    assert combine([on("", S.FAILED)]).failed == APPS
    assert combine([on("", S.SUCCEEDED)]).failed is None


def test_a_cluster_not_read_yet_says_so_and_a_failure_named_first_stays_named() -> None:
    dev = on("dev", S.FAILED, message="apps BuildFailed", at=20.0)
    waiting = pending(SessionSpec(id="push", remote_url="https://example.com/fleet.git", commit=SHA_NEW), "prod")
    first = combine([dev, waiting])
    assert first.message == "failed on dev: apps BuildFailed"
    assert first.summary() == "failed on dev · prod not read yet"
    # prod's failing pass began earlier than dev's, but dev was named first: it stays the one named.
    later = combine([dev, on("prod", S.FAILED, message="web InstallFailed", at=12.0)], failed_on=first.failed_on)
    assert (later.failed_on, later.message, later.ended_at) == ("dev", "failed on dev: apps BuildFailed", 20.0)
