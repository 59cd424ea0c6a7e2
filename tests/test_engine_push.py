"""The engine composing clusters, and the store under it: what a review of #13 found, each with its test.

The clusters here are stand-ins that take `add` and nothing else: the engine's own bookkeeping (which cluster a
push failed on, the store's markers, its locks) is what is tested; tests/test_sim_clusters.py runs real ones.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fluxmon.core.config import Retention
from fluxmon.core.engine import Engine
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import SessionSpec, SessionState, evaluate
from fluxmon.core.store import SessionStore, push_record
from tests.flux_bodies import SHA_NEW
from tests.test_push import on

S = SessionState
SPEC = SessionSpec(id="push", remote_url="https://example.com/fleet.git", branch="main", commit=SHA_NEW)
WAIT_SECONDS = 10.0


def engine_on(contexts: list[str], state_dir: Path) -> tuple[Engine, list[PushSnapshot]]:
    """An engine whose clusters are stand-ins, following SPEC; and what it publishes."""
    engine = Engine(state_dir=state_dir)
    stand_ins: tuple[Any, ...] = tuple(
        SimpleNamespace(context=c, manager=SimpleNamespace(add=lambda _spec: None)) for c in contexts
    )
    engine.clusters = stand_ins
    published: list[PushSnapshot] = []
    engine.subscribe(published.append)
    engine.add(SPEC)
    return engine, published


def test_the_cluster_a_push_was_first_said_to_fail_on_stays_the_one_named(tmp_path: Path) -> None:
    """prod's failing pass began before dev's but published after it: dev was named, in the notification too."""
    engine, published = engine_on(["dev", "prod"], tmp_path)
    engine._on_snapshot(on("dev", S.FAILED, message="apps BuildFailed", at=20.0))
    engine._on_snapshot(on("prod", S.FAILED, message="web InstallFailed", at=12.0))
    assert [push.failed_on for push in published] == ["dev", "dev"]
    assert engine.store is not None
    (record,) = engine.store.history()
    assert (record["failed_on"], record["message"]) == ("dev", "failed on dev: apps BuildFailed")


def test_the_store_is_written_outside_the_lock_the_ui_thread_takes(tmp_path: Path) -> None:
    """A history append waiting on another process's lock must not freeze the tray's calls into the engine."""
    engine, _ = engine_on(["dev", "prod"], tmp_path)
    assert engine.store is not None
    writing, release = threading.Event(), threading.Event()

    def slow_finish(push: PushSnapshot) -> None:
        writing.set()
        release.wait(WAIT_SECONDS)

    engine.store.finish = slow_finish  # type: ignore[method-assign]
    engine._on_snapshot(on("dev", S.SUCCEEDED))
    worker = threading.Thread(target=engine._on_snapshot, args=(on("prod", S.SUCCEEDED),), name="prod-worker")
    worker.start()
    try:
        assert writing.wait(WAIT_SECONDS)
        answered: list[object] = []
        ui = threading.Thread(
            target=lambda: answered.extend([engine.contexts, engine.wait_final("push", 0)]), name="ui-thread"
        )
        ui.start()
        ui.join(WAIT_SECONDS)
        assert answered, "the UI thread waited for the store"
        assert answered[0] == ("dev", "prod")
    finally:
        release.set()
        worker.join(WAIT_SECONDS)


def test_a_told_outcome_is_not_marked_untold_again_when_its_push_is_resumed(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.untell("push")
    store.told("push")  # the tray told it; then it restarted, and the resumed push decided its outcome again
    store.untell("push")
    assert store.was_told("push")
    assert not (tmp_path / "untold" / "push").exists()


def test_retention_keeps_the_markers_of_a_push_still_followed(tmp_path: Path) -> None:
    """A push failed on dev but still followed on prod is in no history yet: a trim must not forget to tell it."""
    store = SessionStore(tmp_path, retention=Retention(limit=3))
    store.save_active(SPEC)
    store.untell(SPEC.id)
    for number in range(8):
        other = on("dev", S.SUCCEEDED)
        store.record(
            PushSnapshot(
                clusters=(replace(other, id=f"q{number}", commit=f"{number:040x}"),), state=S.SUCCEEDED, message="ok"
            ),
            follower="tray",
        )
    assert (tmp_path / "untold" / SPEC.id).exists()


def test_a_history_record_of_the_wrong_shape_is_skipped_not_raised(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    good = push_record(PushSnapshot(clusters=(on("dev", S.SUCCEEDED),), state=S.SUCCEEDED, message="ok"))
    broken: dict[str, Any] = {**good, "id": "broken", "commit": "1" * 40, "clusters": ["prod"]}
    store.record(PushSnapshot(clusters=(on("dev", S.SUCCEEDED),), state=S.SUCCEEDED, message="ok"), follower="tray")
    with (tmp_path / "history.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**broken, "version": 3, "recorded_at": time.time()}) + "\n")
    assert [push.id for push in store.recent()] == ["push"]


def test_a_cluster_whose_sources_may_not_be_listed_is_not_said_to_not_follow_the_push() -> None:
    """A 403 on GitRepositories hides the very source that may follow the push: unknown, not "not followed"."""
    states = {
        "GitRepository": KindState(kind="GitRepository", status=KindStatus.FORBIDDEN, message="403"),
        "OCIRepository": KindState(kind="OCIRepository", status=KindStatus.SYNCED),
        "Kustomization": KindState(kind="Kustomization", status=KindStatus.SYNCED),
    }
    judged = evaluate(replace(SPEC, created_at=0.0, timeout_seconds=300), {}, states, now=1.0)
    assert judged.state is S.WAITING_FOR_SOURCE


def test_a_cluster_without_flux_does_not_follow_the_push() -> None:
    """One of `--all-contexts` may be a plain cluster: no source kind served there, so nothing follows the push."""
    states = {
        kind: KindState(kind=kind, status=KindStatus.MISSING, message="not served")
        for kind in ("GitRepository", "OCIRepository", "Kustomization")
    }
    judged = evaluate(replace(SPEC, created_at=0.0, timeout_seconds=300), {}, states, now=1.0)
    assert (judged.state, judged.message) == (S.NOT_DEPLOYED, "Flux is not installed here: no source kind is served")
