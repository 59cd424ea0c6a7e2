"""Pushes as people really make them: back to back, overtaken, force-pushed, tagged, mirrored, to a URL.

Real git, the real hooks, real pushes to real bare repositories (and to a real smart-HTTP remote that wants a
password); where a cluster is needed, the simulated API server with the simulated Flux controllers.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core import hookinstall
from fluxmon.core.ancestry import GitAncestry, Lineage, Question, Relation, relate, remote_relation
from fluxmon.core.gitpush import confirm_push
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.objects import FluxObject, ObjectRef, parse_flux_object
from fluxmon.core.redact import redact_text
from fluxmon.core.session import (
    SessionSnapshot,
    SessionSpec,
    SessionState,
    evaluate,
    reconcile_retry_delay,
    spec_from_request,
)
from fluxmon.core.spool import SpoolReader
from fluxmon.core.verdict import Phase
from harness.gitrepos import Repos, isolated_env, make_repos
from tests.fleet import SCALE_WEB, Fleet, edit
from tests.flux_bodies import SHA_NEW, SHA_OLD, condition, git_repository, kustomization, ready
from tests.githttp import git_http_server

SECRET = "hunter2-token"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return make_repos(tmp_path)


def _everything_written(repos: Repos) -> list[Path]:
    """Every file the hooks and their confirmer may have written: the pending folder, the log, the spool."""
    places = [repos.work / ".git" / "fluxmon", repos.spool]
    return [path for place in places if place.exists() for path in place.rglob("*") if path.is_file()]


# --- 1. back-to-back pushes ----------------------------------------------------------------------------------------


def test_twenty_pushes_in_a_row_give_twenty_sessions(repos: Repos) -> None:
    pushed = []
    for number in range(20):
        pushed.append(repos.commit("apps/web.yaml", f"replicas: {number}\n", f"change {number}"))
        # As a person pushes: one after the other, without waiting for anything of fluxmon's.
        result = repos.git("push", "-q", "origin", "main", check=False)
        assert result.returncode == 0, result.stderr
    repos.settle()
    sessions = repos.sessions()
    assert sorted(s["ref"]["new"] for s in sessions) == sorted(pushed)
    assert {s["confirmed_by"] for s in sessions} == {"remote-tracking-ref"}
    assert len({s["push_id"] for s in sessions}) == 20, "one confirmer served several pushes: each keeps its own id"
    log = repos.work / ".git" / "fluxmon" / "hook.log"
    assert "rejected" not in (log.read_text() if log.exists() else "")


def test_two_git_processes_pushing_at_once_each_confirm_their_own(repos: Repos) -> None:
    first = repos.commit("a.yaml", "a: 1\n", "on main")
    repos.git("branch", "other")
    repos.git("checkout", "-q", "other")
    second = repos.commit("b.yaml", "b: 1\n", "on other")
    pushes = [
        subprocess.Popen(["git", "push", "-q", "origin", ref], cwd=repos.work, env=repos.env)
        for ref in (f"{first}:refs/heads/main", "other")
    ]
    assert [push.wait(timeout=60) for push in pushes] == [0, 0]
    repos.settle()
    assert sorted((s["ref"]["name"], s["ref"]["new"]) for s in repos.sessions()) == [
        ("main", first),
        ("other", second),
    ]


# --- 2. overtaken commits: the pure rules ------------------------------------------------------------------------

SHA_NEWER = "9a8b7c6d5e4f30211203948576afbecd01234567"
SHA_REWRITTEN = "5555555555aaaaaaaaaabbbbbbbbbbcccccccccc"
SYNCED = {
    kind: KindState(kind=kind, status=KindStatus.SYNCED)
    for kind in ("GitRepository", "OCIRepository", "Kustomization", "HelmRelease")
}
PUSHED = SessionSpec(
    id="pushed",
    remote_url="ssh://git@github.com/acme/fleet",
    branch="main",
    commit=SHA_NEW,
    repo="/nowhere",
    replaced=SHA_OLD,
    created_at=1000.0,
    timeout_seconds=300,
)


def _world(*bodies: dict[str, Any]) -> dict[ObjectRef, FluxObject]:
    parsed = [parse_flux_object(body) for body in bodies]
    return {obj.ref: obj for obj in parsed}


def _ancestry(pairs: set[tuple[str, str]]) -> Callable[[str, str], bool | None]:
    return lambda a, b: a == b or (a, b) in pairs


@pytest.mark.parametrize(
    ("seen", "pairs", "expected"),
    [
        (SHA_NEWER, {(SHA_NEW, SHA_NEWER)}, Relation.CONTAINS),
        (SHA_OLD, {(SHA_OLD, SHA_NEW)}, Relation.OLDER),
        # The push was itself a force push, not fetched yet: the source still has the history it replaced.
        (SHA_REWRITTEN, {(SHA_REWRITTEN, SHA_OLD)}, Relation.OLDER),
        (SHA_REWRITTEN, set(), Relation.REWRITTEN),
    ],
    ids=["descendant", "ancestor", "replaced-history", "rewritten"],
)
def test_how_a_commit_flux_has_relates_to_the_pushed_one(
    seen: str, pairs: set[tuple[str, str]], expected: Relation
) -> None:
    assert relate(pushed=SHA_NEW, seen=seen, replaced=SHA_OLD, is_ancestor=_ancestry(pairs)) is expected


def test_what_git_cannot_answer_is_unknown_not_rewritten() -> None:
    assert relate(pushed=SHA_NEW, seen=SHA_NEWER, replaced="", is_ancestor=lambda a, b: None) is Relation.UNKNOWN


def test_a_push_overtaken_by_a_newer_commit_is_deployed_as_part_of_it() -> None:
    newer = f"main@sha1:{SHA_NEWER}"
    world = _world(git_repository(revision=newer), kustomization("apps", applied=newer, conditions=ready(newer)))
    contains = {SHA_NEWER: Lineage(relation=Relation.CONTAINS, commit=SHA_NEWER)}
    without = evaluate(PUSHED, world, SYNCED, now=1001.0)
    assert without.state is SessionState.WAITING_FOR_SOURCE  # before: it waited, then timed out
    snapshot = evaluate(PUSHED, world, SYNCED, now=1001.0, lineage=contains)
    assert snapshot.state is SessionState.SUCCEEDED
    assert snapshot.message == f"{SHA_NEW[:7]} deployed as part of {SHA_NEWER[:7]}: 2 resources ready"


def test_a_push_applied_itself_is_just_deployed_when_the_source_has_moved_on() -> None:
    newer, pushed = f"main@sha1:{SHA_NEWER}", f"main@sha1:{SHA_NEW}"
    world = _world(git_repository(revision=newer), kustomization("apps", applied=pushed, conditions=ready(pushed)))
    contains = {SHA_NEWER: Lineage(relation=Relation.CONTAINS, commit=SHA_NEWER)}
    snapshot = evaluate(PUSHED, world, SYNCED, now=1001.0, lineage=contains)
    assert snapshot.message == f"{SHA_NEW[:7]} deployed: 2 resources ready"


def test_a_push_overtaken_by_a_newer_commit_that_fails_fails_and_names_that_commit() -> None:
    newer, old = f"main@sha1:{SHA_NEWER}", f"main@sha1:{SHA_OLD}"
    failed = [
        condition("Ready", "False", "BuildFailed", "kustomize build failed: yaml: line 3"),
        condition("Reconciling", "True", "ProgressingWithRetry", "retrying"),
    ]
    world = _world(
        git_repository(revision=newer), kustomization("apps", applied=old, attempted=newer, conditions=failed)
    )
    snapshot = evaluate(
        PUSHED, world, SYNCED, now=1001.0, lineage={SHA_NEWER: Lineage(relation=Relation.CONTAINS, commit=SHA_NEWER)}
    )
    assert snapshot.state is SessionState.FAILED
    assert snapshot.message == (
        f"Kustomization flux-system/apps failed at {SHA_NEWER[:7]}, a newer commit that contains {SHA_NEW[:7]}: "
        "BuildFailed: kustomize build failed: yaml: line 3"
    )


def test_a_push_whose_history_was_rewritten_is_superseded_not_timed_out() -> None:
    other = f"main@sha1:{SHA_REWRITTEN}"
    world = _world(git_repository(revision=other), kustomization("apps", applied=other, conditions=ready(other)))
    snapshot = evaluate(
        PUSHED,
        world,
        SYNCED,
        now=1001.0,
        lineage={SHA_REWRITTEN: Lineage(relation=Relation.REWRITTEN, commit=SHA_REWRITTEN)},
    )
    assert snapshot.state is SessionState.SUPERSEDED
    assert snapshot.message == (
        f"superseded: GitRepository/flux-system/fleet fetched {SHA_REWRITTEN[:7]}, which does not contain "
        f"{SHA_NEW[:7]}: the branch's history was rewritten (a force push)"
    )


def test_what_git_could_not_tell_is_said_in_a_note() -> None:
    newer = f"main@sha1:{SHA_NEWER}"
    world = _world(git_repository(revision=newer), kustomization("apps", applied=newer, conditions=ready(newer)))
    unknown = Lineage(relation=Relation.UNKNOWN, commit=SHA_NEWER, why="9a8b7c6 is not in /nowhere")
    snapshot = evaluate(PUSHED, world, SYNCED, now=1001.0, lineage={SHA_NEWER: unknown})
    assert snapshot.state is SessionState.WAITING_FOR_SOURCE
    assert (
        f"cannot tell whether 9a8b7c6 (GitRepository/flux-system/fleet has it) contains {SHA_NEW[:7]}: "
        "9a8b7c6 is not in /nowhere"
    ) in snapshot.notes


# --- 2. overtaken commits: real git ---------------------------------------------------------------------------------


def test_git_answers_descendant_replaced_history_and_rewritten(repos: Repos) -> None:
    ancestry = GitAncestry()
    first = repos.commit("j.yaml", "j: 1\n", "first")
    repos.git("push", "-q", "origin", "main")
    second = repos.commit("k.yaml", "k: 1\n", "second")
    repos.git("reset", "-q", "--hard", first)
    amended = repos.commit("k.yaml", "k: 2\n", "second, rewritten")
    repo = str(repos.work)

    def ask(pushed: str, seen: str, replaced: str = "") -> Relation:
        question = Question(
            repo=repo, pushed=pushed, seen=seen, replaced=replaced, remote="origin", ref="refs/heads/main"
        )
        return ancestry.answer(question).relation

    assert ask(first, second) is Relation.CONTAINS
    assert ask(second, first) is Relation.OLDER
    assert ask(amended, second, replaced=second) is Relation.OLDER  # my own force push, not fetched yet
    assert ask(first, amended) is Relation.CONTAINS
    assert ask(second, amended) is Relation.REWRITTEN  # and the remote's main (first) does not hold it either
    repos.git("push", "-q", "--no-verify", "origin", "main")
    # Not knowing what the push replaced (`fluxmon wait` after a force push): the remote's tip has the push, so
    # Flux is only behind.
    assert ask(amended, second) is Relation.OLDER


@pytest.mark.parametrize(
    ("tip", "contains", "expected"),
    [
        ("", None, Relation.REWRITTEN),
        (SHA_NEWER, True, Relation.OLDER),
        (SHA_NEWER, False, Relation.REWRITTEN),
        (SHA_NEWER, None, Relation.UNKNOWN),
    ],
    ids=["branch-gone", "tip-holds-the-push", "tip-rewritten", "cannot-tell"],
)
def test_a_rewrite_counts_only_when_the_remote_no_longer_holds_the_push(
    tip: str, contains: bool | None, expected: Relation
) -> None:
    assert remote_relation(tip=tip, contains=contains)[0] is expected


def test_git_fetches_a_newer_commit_this_clone_lacks_without_touching_its_refs(repos: Repos, tmp_path: Path) -> None:
    mine = repos.commit("l.yaml", "l: 1\n", "mine")
    repos.git("push", "-q", "origin", "main")
    other = tmp_path / "other"
    repos.git("clone", "-q", str(repos.remote), str(other), cwd=tmp_path)
    theirs = repos.commit("m.yaml", "m: 1\n", "theirs", cwd=other)
    repos.git("push", "-q", "origin", "main", cwd=other)
    refs_before = repos.git("for-each-ref").stdout
    question = Question(repo=str(repos.work), pushed=mine, seen=theirs, remote="origin", ref="refs/heads/main")
    assert GitAncestry(fetch=False).answer(question).relation is Relation.UNKNOWN
    answer = GitAncestry().answer(question)
    assert (answer.relation, answer.commit) == (Relation.CONTAINS, theirs)
    assert repos.git("for-each-ref").stdout == refs_before  # read-only: no tracking ref moved
    assert not (repos.work / ".git" / "FETCH_HEAD").exists()


def test_git_says_why_when_the_newer_commit_cannot_be_fetched(repos: Repos) -> None:
    mine = repos.git("rev-parse", "HEAD").stdout.strip()
    question = Question(
        repo=str(repos.work), pushed=mine, seen=SHA_NEWER, remote=str(repos.root / "gone.git"), ref="refs/heads/main"
    )
    answer = GitAncestry().answer(question)
    assert answer.relation is Relation.UNKNOWN
    assert answer.why.startswith(f"{SHA_NEWER[:7]} is not in {repos.work}; fetching it failed: ")


def test_stop_ends_a_fetch_from_a_remote_that_never_answers(repos: Repos) -> None:
    mine = repos.git("rev-parse", "HEAD").stdout.strip()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(30)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/fleet.git"
        answered = threading.Event()
        ancestry = GitAncestry(on_answer=answered.set)
        ancestry.start()
        try:
            question = Question(repo=str(repos.work), pushed=mine, seen=SHA_NEWER, remote=url, ref="refs/heads/main")
            assert ancestry.lookup(question) is None
            connection, _ = silent.accept()  # git is fetching now, and will wait for an answer that never comes
        finally:
            ancestry.stop()
        # Still connected: only stop() itself can have ended git, and with it the worker.
        assert [t.name for t in threading.enumerate() if t.name == "fluxmon-ancestry"] == []
        connection.close()
    assert not answered.is_set()


def test_hostile_text_from_the_cluster_never_becomes_a_git_option(repos: Repos) -> None:
    mine = repos.git("rev-parse", "HEAD").stdout.strip()
    for seen, remote in (("--upload-pack=touch /tmp/pwned", "origin"), (SHA_NEWER, "--upload-pack=touch x")):
        answer = GitAncestry().answer(
            Question(repo=str(repos.work), pushed=mine, seen=seen, remote=remote, ref="refs/heads/main")
        )
        assert answer.relation is Relation.UNKNOWN
    assert not (repos.work / "x").exists()


# --- 2. overtaken commits: the session manager on a cluster ----------------------------------------------------------


def _spec(fleet: Fleet, sha: str, *, replaced: str, session_id: str = "pushed") -> SessionSpec:
    return SessionSpec(
        id=session_id,
        remote_url=fleet.git("remote", "get-url", "origin"),
        remote_name="origin",
        branch="main",
        commit=sha,
        repo=str(fleet.work),
        replaced=replaced,
        reconcile=True,
        timeout_seconds=120,
    )


def _final(fleet: Fleet, spec: SessionSpec) -> SessionSnapshot:
    cluster = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    manager = SessionManager(cluster)
    manager.start()
    try:
        manager.add(spec)
        fleet.controllers.start()
        snapshot = manager.wait_final(spec.id, timeout=60)
    finally:
        manager.stop()
        cluster.close()
    assert snapshot is not None
    assert snapshot.state.final, snapshot
    return snapshot


def test_a_push_overtaken_before_flux_fetched_it_is_deployed_as_part_of_the_next(fleet: Fleet) -> None:
    fleet.controllers.stop()  # both pushes land before Flux fetches
    before = fleet.git("rev-parse", "HEAD")
    first = fleet.commit_and_push(SCALE_WEB, "scale web")
    second = fleet.commit_and_push(edit("apps/web.yaml", "replicas: 3", "replicas: 4"), "scale web again")
    snapshot = _final(fleet, _spec(fleet, first, replaced=before))
    assert snapshot.state is SessionState.SUCCEEDED, snapshot.message
    assert snapshot.message.startswith(f"{first[:7]} deployed as part of {second[:7]}: ")


def test_a_push_overtaken_by_a_broken_commit_fails_and_names_it(fleet: Fleet) -> None:
    fleet.controllers.stop()
    before = fleet.git("rev-parse", "HEAD")
    first = fleet.commit_and_push(SCALE_WEB, "scale web")
    broken = fleet.commit_and_push(edit("apps/web.yaml", "  replicas: 3", "  replicas: 3\n    oops: [unclosed"), "oops")
    snapshot = _final(fleet, _spec(fleet, first, replaced=before))
    assert snapshot.state is SessionState.FAILED, snapshot.message
    assert snapshot.message.startswith(
        f"Kustomization flux-system/apps failed at {broken[:7]}, a newer commit that contains {first[:7]}: BuildFailed"
    )


def test_a_push_that_another_clone_overtook_is_fetched_and_deployed(fleet: Fleet, tmp_path: Path) -> None:
    fleet.controllers.stop()
    before = fleet.git("rev-parse", "HEAD")
    mine = fleet.commit_and_push(SCALE_WEB, "scale web")
    other = tmp_path / "colleague"
    fleet.git("clone", "-q", fleet.git("remote", "get-url", "origin"), str(other))
    (other / "apps" / "extra.txt").write_text("not a manifest\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "theirs"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=other, env=fleet.env, check=True, capture_output=True, timeout=60)
    theirs = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=other, env=fleet.env, check=True, capture_output=True, text=True
    ).stdout.strip()
    snapshot = _final(fleet, _spec(fleet, mine, replaced=before))
    assert snapshot.state is SessionState.SUCCEEDED, snapshot.message
    assert f"deployed as part of {theirs[:7]}" in snapshot.message


def test_a_push_rewritten_away_by_a_force_push_is_superseded(fleet: Fleet) -> None:
    fleet.controllers.stop()
    before = fleet.git("rev-parse", "HEAD")
    first = fleet.commit_and_push(SCALE_WEB, "scale web")
    fleet.git("reset", "-q", "--hard", before)
    SCALE_WEB(fleet.work)
    fleet.git("commit", "-q", "-am", "scale web, reworded")
    fleet.git("push", "-q", "--force", "origin", "main")
    rewritten = fleet.git("rev-parse", "HEAD")
    snapshot = _final(fleet, _spec(fleet, first, replaced=before))
    assert snapshot.state is SessionState.SUPERSEDED, snapshot.message
    assert f"fetched {rewritten[:7]}, which does not contain {first[:7]}" in snapshot.message


def test_my_own_force_push_is_followed_while_flux_still_has_what_it_replaced(fleet: Fleet) -> None:
    first = fleet.push(SCALE_WEB, "scale web")
    fleet.wait_phases(first, {"Kustomization/apps": Phase.READY})
    fleet.controllers.stop()
    fleet.git("commit", "-q", "--amend", "-m", "scale web, reworded")
    fleet.git("push", "-q", "--force", "origin", "main")
    amended = fleet.git("rev-parse", "HEAD")
    snapshot = _final(fleet, _spec(fleet, amended, replaced=first))
    assert snapshot.state is SessionState.SUCCEEDED, snapshot.message
    assert snapshot.message.startswith(f"{amended[:7]} deployed: ")


# --- 7. a reconcile request taken while the Git host still served the old tip -------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 5, 50])
def test_a_reconcile_request_is_asked_again_with_backoff(attempt: int) -> None:
    delays = [reconcile_retry_delay(n) for n in range(attempt + 1)]
    assert delays == sorted(delays)
    assert 2.0 <= delays[-1] <= 30.0


def test_a_request_the_source_took_at_an_older_revision_is_asked_again(fleet: Fleet) -> None:
    # The push has returned, but the Git host serves the commit a moment later: the source takes the first
    # request while the remote still has the old tip. Its own interval (1m) is longer than the session's time.
    SCALE_WEB(fleet.work)
    fleet.git("commit", "-q", "-am", "scale web")
    pushed = fleet.git("rev-parse", "HEAD")
    spec = replace(_spec(fleet, pushed, replaced=fleet.git("rev-parse", "HEAD~1")), timeout_seconds=40)
    took = threading.Event()
    cluster = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    manager = SessionManager(cluster)
    manager.subscribe(lambda snapshot: took.set() if any("took the reconcile" in n for n in snapshot.notes) else None)
    manager.start()
    try:
        manager.add(spec)
        assert took.wait(30), "the source never took the first reconcile request"
        fleet.git("push", "-q", "origin", "main")  # the host serves it now
        snapshot = manager.wait_final(spec.id, timeout=45)
    finally:
        manager.stop()
        cluster.close()
    assert snapshot is not None
    assert snapshot.state is SessionState.SUCCEEDED, snapshot.message
    assert "GitRepository/flux-system fetched an older revision; asking again" in snapshot.notes


# --- 3. annotated tags ---------------------------------------------------------------------------------------------


def test_an_annotated_tag_session_carries_the_commit_not_the_tag_object(repos: Repos) -> None:
    commit = repos.commit("c.yaml", "c: 1\n", "release")
    repos.git("tag", "-a", "-m", "release 1.0", "v1.0")
    tag_object = repos.git("rev-parse", "v1.0").stdout.strip()
    assert tag_object != commit
    assert repos.push("origin", "v1.0").returncode == 0
    (session,) = repos.sessions()
    assert (session["ref"]["kind"], session["ref"]["name"], session["ref"]["new"]) == ("tag", "v1.0", commit)
    assert (session["confirmed"], session["confirmed_by"]) == (True, "ls-remote")


def test_a_tag_session_matches_the_revision_flux_writes_for_the_tag() -> None:
    # fluxcd/pkg git/git.go (0009fda236cce3ac36a73656ef704fb10382f1f0), Commit.String(): the short name of the
    # reference, "@", then the commit's digest, so refs/tags/v1.0 gives `v1.0@sha1:<the tagged commit>`.
    revision = f"v1.0@sha1:{SHA_NEW}"
    tagged = SessionSpec(id="t", remote_url=PUSHED.remote_url, tag="v1.0", commit=SHA_NEW, created_at=1000.0)
    world = _world(
        git_repository(ref={"tag": "v1.0"}, revision=revision),
        kustomization("apps", applied=revision, conditions=ready(revision)),
    )
    snapshot = evaluate(tagged, world, SYNCED, now=1001.0)
    assert snapshot.state is SessionState.SUCCEEDED, snapshot.message


# --- 4. pushurl ----------------------------------------------------------------------------------------------------


def test_a_push_to_a_pushurl_is_confirmed_against_that_url(repos: Repos, tmp_path: Path) -> None:
    # The fetch URL is a read mirror that lags; pushes go to the primary. A tag has no tracking ref, so the
    # confirmer asks the remote, and must ask the one that was pushed to.
    primary = tmp_path / "primary.git"
    repos.git("clone", "-q", "--bare", str(repos.remote), str(primary), cwd=tmp_path)
    repos.git("config", "remote.origin.pushurl", str(primary))
    commit = repos.commit("d.yaml", "d: 1\n", "to the primary")
    repos.git("tag", "v2")
    assert repos.push("origin", "v2").returncode == 0
    (session,) = repos.sessions()
    assert session["ref"]["new"] == commit
    assert (session["confirmed"], session["confirmed_by"]) == (True, "ls-remote")
    assert session["remote"]["url"] == str(primary)


# --- 5. push --mirror ----------------------------------------------------------------------------------------------


def test_a_mirror_push_makes_no_sessions_for_remote_tracking_refs(repos: Repos, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror.git"
    repos.git("init", "-q", "--bare", str(mirror), cwd=tmp_path)
    repos.git("remote", "add", "backup", str(mirror))
    commit = repos.commit("e.yaml", "e: 1\n", "mirrored")
    assert repos.push("--mirror", "backup").returncode == 0
    sessions = repos.sessions()
    assert [s["ref"]["remote_ref"] for s in sessions] == ["refs/heads/main"]
    assert sessions[0]["ref"]["new"] == commit


# --- 6. a push that sends nothing, and credentials ------------------------------------------------------------------


def test_a_push_that_sends_nothing_prints_writes_and_leaves_nothing(repos: Repos) -> None:
    result = repos.push("origin", "main")  # already up to date
    assert result.returncode == 0
    assert "fluxmon" not in result.stderr + result.stdout
    assert _everything_written(repos) == []


def test_a_push_refused_locally_prints_writes_and_leaves_nothing(repos: Repos, tmp_path: Path) -> None:
    other = tmp_path / "other"
    repos.git("clone", "-q", str(repos.remote), str(other), cwd=tmp_path)
    repos.commit("f.yaml", "f: 1\n", "someone else's change", cwd=other)
    repos.git("push", "-q", "origin", "main", cwd=other)
    repos.git("fetch", "-q", "origin")  # git now knows, before pushing anything, that this push is not a fast-forward
    for path in _everything_written(repos):
        path.unlink()
    repos.commit("g.yaml", "g: 1\n", "my change")
    result = repos.push("origin", "main")
    assert result.returncode != 0
    assert "rejected" in result.stderr
    assert "fluxmon" not in result.stderr
    assert _everything_written(repos) == []


def test_no_credential_reaches_the_disk_during_or_after_a_push(repos: Repos, tmp_path: Path) -> None:
    # The remote's own hook runs while the push is in flight, after pre-push has written its record: it looks
    # at every file fluxmon has written by then.
    seen = tmp_path / "seen-during-push"
    pending = repos.work / ".git" / "fluxmon"
    spy = repos.remote / "hooks" / "pre-receive"
    spy.write_text(
        f"#!/bin/sh\ncat >/dev/null\nfind {pending} {repos.spool} -type f -exec cat {{}} + >>{seen} 2>&1\nexit 0\n"
    )
    spy.chmod(0o755)
    with git_http_server(repos.root, user="bot", password=SECRET) as base:
        url = f"{base.replace('http://', f'http://bot:{SECRET}@')}/remote.git"
        repos.commit("h.yaml", "h: 1\n", "by url with a token")
        by_url = repos.push(url, "HEAD:main")
        assert by_url.returncode == 0, by_url.stderr
        repos.git("remote", "set-url", "origin", url)
        repos.git("fetch", "-q", "origin")  # origin/main catches up with the push by URL: git's update confirms
        repos.commit("i.yaml", "i: 1\n", "by name")
        named = repos.push("origin", "main")
        assert named.returncode == 0, named.stderr
        repos.git("tag", "v3")
        trace = tmp_path / "trace.json"
        tagged = subprocess.run(
            ["git", "push", "-q", url, "v3"],
            cwd=repos.work,
            env={**repos.env, "GIT_TRACE2_EVENT": str(trace)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        repos.settle()
        assert tagged.returncode == 0, tagged.stderr
    assert "fluxmon" in seen.read_text(), "the spy saw none of fluxmon's files: it proves nothing"
    assert SECRET not in seen.read_text()
    # The tag went to the URL: it is confirmed by asking that URL, credentials and all, which only memory held.
    assert sorted(s["confirmed_by"] for s in repos.sessions()) == ["ls-remote", "ls-remote", "remote-tracking-ref"]
    for path in _everything_written(repos):
        assert SECRET not in path.read_text(errors="replace"), path
    # Nor does any argument list of the confirmer's git commands (every local user can read those).
    asked = [line for line in trace.read_text().splitlines() if '"argv":["git","ls-remote"' in line]
    assert asked
    assert not [line for line in asked if SECRET in line]


class _OutputUntil:
    """Reads a child's output line by line, waiting on the pipe (select) with a deadline, never forever."""

    def __init__(self, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        self._timeout = timeout
        self._buffer = b""
        self.text = ""

    def until(self, wanted: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + self._timeout
        while True:
            while b"\n" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\n")
                line = raw.decode("utf-8", "replace")
                self.text += line + "\n"
                if wanted(line):
                    return line
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(remaining, 0))
            chunk = os.read(self._fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"not seen within {self._timeout:.0f}s; the output so far:\n{self.text}")
            self._buffer += chunk


# --- 19. scripts/fluxmon in the caller's directory -----------------------------------------------------------------


@pytest.mark.parametrize("linked", [False, True], ids=["as-is", "through-a-symlink"])
def test_scripts_fluxmon_runs_in_the_callers_directory(tmp_path: Path, linked: bool) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    if not (REPO_ROOT / ".venv" / "bin" / "fluxmon").exists():
        pytest.skip("scripts/fluxmon needs the checkout's .venv (scripts/check creates it)")
    script = REPO_ROOT / "scripts" / "fluxmon"
    if linked:
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "fluxmon").symlink_to(script)
        script = tmp_path / "bin" / "fluxmon"
    result = subprocess.run(
        [str(script), "hook", "install"],
        cwd=repos.work,
        env=repos.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "fluxmon-hook" in (repos.work / ".git" / "hooks" / "pre-push").read_text()


# --- 20. fluxmon demo --keep follows the user's own pushes ----------------------------------------------------------


def test_demo_keep_follows_the_users_own_pushes(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path), "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-u", "-m", "fluxmon", "demo", "--fast", "--keep", "--headless"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = _OutputUntil(demo)
        line = output.until(lambda text: "still following pushes to" in text)
        work = Path(line.split("still following pushes to ")[1].split(";")[0])
        # The user's own shell: it never had the demo's FLUXMON_SPOOL_DIR.
        user_env = {k: v for k, v in env.items() if k != "FLUXMON_SPOOL_DIR"}
        target = work / "apps" / "base" / "web.yaml"  # what both of the demo's clusters apply
        target.write_text(target.read_text().replace("replicas: 3", "replicas: 4"))
        for args in (["commit", "-q", "-am", "my own change"], ["push", "-q", "origin", "main"]):
            subprocess.run(["git", *args], cwd=work, env=user_env, check=True, timeout=60, capture_output=True)
        mine = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=work,
            env=user_env,
            check=True,
            text=True,
            capture_output=True,
        ).stdout.strip()
        final = output.until(lambda text: text.strip().startswith((f"✔ main@{mine} ", f"✗ main@{mine} ")))
        assert f"► the hooks recorded the push of {mine} to main" in output.text
        assert final.strip().startswith(f"✔ main@{mine} deployed to staging, production"), output.text
        assert f"✔ production: {mine} deployed" in output.text
    finally:
        demo.terminate()
        demo.communicate(timeout=60)
        kept = list(tmp_path.glob("fluxmon-demo-*"))
        for folder in kept:
            shutil.rmtree(folder, ignore_errors=True)


# --- more of how people push -----------------------------------------------------------------------------------------


def test_a_push_from_a_linked_worktree_is_followed(repos: Repos, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    repos.git("worktree", "add", "-q", "-b", "hotfix", str(linked))
    sha = repos.commit("n.yaml", "n: 1\n", "hotfix", cwd=linked)
    assert repos.push("origin", "hotfix", cwd=linked).returncode == 0
    (session,) = repos.sessions()
    assert (session["ref"]["name"], session["ref"]["new"], session["confirmed_by"]) == (
        "hotfix",
        sha,
        "remote-tracking-ref",
    )


def test_a_pre_push_run_by_another_hook_manager_still_confirms(repos: Repos) -> None:
    # A hook manager that runs ours as its own child: our pre-push's parent is the manager, which exits before
    # git has even sent the push. pre-push finds the git process above it, so that the confirmer waits for the
    # push to end (asking the remote any earlier would find the old sha and call the push rejected), and
    # git's reference-transaction, whose parent is git, logs its update for this record.
    ours = repos.hooks / "pre-push"
    ours.rename(repos.hooks / "pre-push.ours")
    ours.write_text('#!/bin/sh\n"$(dirname "$0")/pre-push.ours" "$@"\n')
    ours.chmod(0o755)
    sha = repos.commit("o.yaml", "o: 1\n", "through a manager")
    assert repos.push("origin", "main").returncode == 0
    (session,) = repos.sessions()
    assert (session["ref"]["new"], session["confirmed"], session["confirmed_by"]) == (sha, True, "remote-tracking-ref")


def test_many_tags_in_one_push_ask_the_remote_once(repos: Repos, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    for number in range(12):
        repos.git("tag", f"v0.{number}")
    result = subprocess.run(
        ["git", "push", "-q", "origin", "--tags"],
        cwd=repos.work,
        env={**repos.env, "GIT_TRACE2_EVENT": str(trace)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    repos.settle()
    assert len(repos.sessions()) == 12
    asked = [line for line in trace.read_text().splitlines() if '"argv":["git","ls-remote"' in line]
    assert len(asked) == 1, asked


@pytest.mark.parametrize(
    "message",
    [
        f"fatal: unable to access 'https://bot:{SECRET}@git.example.com/fleet.git/': The requested URL returned 403",
        f"remote: see (https://{SECRET}@git.example.com/fleet),",
        f"fatal: 'http://[oops:{SECRET}@x/y.git': not a valid URL",
    ],
)
def test_git_messages_in_the_hook_log_never_carry_credentials(message: str) -> None:
    redacted = redact_text(message)
    assert SECRET not in redacted
    assert redacted.split(" ")[0] == message.split(" ")[0]


def test_hook_status_names_the_spool_the_repos_pushes_go_to(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    own = tmp_path / "demo-spool"
    repos.git("config", "fluxmon.spoolDir", str(own))
    assert f"sessions wait in {own})" in repos.fluxmon("hook", "status").stdout


def test_hook_uninstall_removes_the_repos_own_spool_setting(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    hookinstall.install(repo=repos.work, spool_dir=tmp_path / "own-spool")
    assert repos.git("config", "fluxmon.spoolDir").stdout.strip() == str(tmp_path / "own-spool")
    hookinstall.uninstall(repo=repos.work)
    assert repos.git("config", "fluxmon.spoolDir", check=False).returncode == 1


def test_a_record_from_hooks_installed_by_an_older_fluxmon_is_still_confirmed(repos: Repos, tmp_path: Path) -> None:
    # Version 1 records carried the remote and URL themselves; hooks are only rewritten by `hook install`.
    old = repos.git("rev-parse", "HEAD").stdout.strip()
    sha = repos.commit("p.yaml", "p: 1\n", "under old hooks")
    repos.git("push", "-q", "--no-verify", "origin", "main")
    record = tmp_path / "1-1.push"
    record.write_text(
        f"fluxmon-pending 1\nremote origin\nurl {repos.remote}\nrepo {repos.work}\n"
        f"ref refs/heads/main {sha} refs/heads/main {old}\n"
    )
    exited = subprocess.Popen(["true"])  # stands for the git process, long gone when the confirmer looks
    exited.wait(timeout=30)
    (written,) = confirm_push(record, git_pid=exited.pid, spool_dir=repos.spool)
    assert json.loads(written.read_text())["ref"]["new"] == sha
    assert not record.exists()


def test_twenty_pushes_in_a_row_all_reach_the_sessions_and_the_last_is_deployed(fleet: Fleet) -> None:
    """Hooks -> spool -> reader -> sessions, for real: every push arrives and ends; none is lost on the way."""
    hookinstall.install(repo=fleet.work)
    spool = Path(fleet.env["FLUXMON_SPOOL_DIR"])
    finals: dict[str, SessionSnapshot] = {}
    all_final = threading.Event()
    pushed: list[str] = []

    def record(snapshot: SessionSnapshot) -> None:
        if snapshot.state.final:
            finals[snapshot.id] = snapshot
            if len(finals) == len(pushed) == 20:
                all_final.set()

    cluster = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    manager = SessionManager(cluster)
    manager.subscribe(record)
    reader = SpoolReader(spool, on_session=lambda request: manager.add(spec_from_request(request)))
    manager.start()
    reader.start()
    try:
        for number in range(20):
            pushed.append(
                fleet.commit_and_push(
                    edit("apps/web.yaml", f"replicas: {number + 2}", f"replicas: {number + 3}"), f"scale {number}"
                )
            )
        assert all_final.wait(90), (
            f"{len(finals)} of 20 sessions ended: {sorted(s.commit[:7] for s in finals.values())}"
        )
    finally:
        reader.stop()
        manager.stop()
        cluster.close()
    assert sorted(s.commit for s in finals.values()) == sorted(pushed)
    last = next(s for s in finals.values() if s.commit == pushed[-1])
    assert last.state is SessionState.SUCCEEDED, last.message
    assert {s.state for s in finals.values()} <= {SessionState.SUCCEEDED, SessionState.SUPERSEDED}
