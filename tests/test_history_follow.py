"""One history for all (#14 item 4): `fluxmon wait` and `watch` record their push's outcome, also while the tray
(an engine holding the store's lock) follows the same push, and the history keeps one record of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.engine import Engine
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.store import HISTORY_FILE, OWNER
from tests.fleet import SCALE_WEB, Fleet, edit

BROKEN_AFTER_SCALING = edit("apps/web.yaml", "  replicas: 3", "  replicas: 3\n    oops: [unclosed")

PATIENCE_SECONDS = 90


def follow(fleet: Fleet, verb: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "fluxmon", verb, "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "60s", "--reconcile", *extra,
        ],
        env=fleet.env, capture_output=True, text=True, timeout=PATIENCE_SECONDS, check=False,
    )  # fmt: skip


def history(fleet: Fleet, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "history", "--json", *args],
        env=fleet.env, capture_output=True, text=True, timeout=PATIENCE_SECONDS, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines()]


def state_dir(fleet: Fleet) -> Path:
    return Path(fleet.env["XDG_STATE_HOME"]) / "fluxmon"


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_wait_and_watch_record_their_outcome_once_per_push(fleet: Fleet) -> None:
    sha = fleet.commit_and_push(SCALE_WEB, "Scale web to 3")
    assert follow(fleet, "wait").returncode == 0
    (recorded,) = history(fleet)
    assert (recorded["commit"], recorded["state"], recorded["follower"]) == (sha, "succeeded", "wait")
    assert {r["phase"] for r in recorded["resources"]} == {"Ready"}
    assert all(r["ready_after_seconds"] >= 0 for r in recorded["resources"])
    assert follow(fleet, "watch").returncode == 0  # the same push again: nothing more final to say
    assert len(history(fleet)) == 1
    assert len((state_dir(fleet) / HISTORY_FILE).read_text().splitlines()) == 1

    broken = fleet.commit_and_push(BROKEN_AFTER_SCALING, "Break apps")
    assert follow(fleet, "watch").returncode == 1
    newest, older = history(fleet)
    assert (newest["commit"], newest["state"], newest["follower"]) == (broken, "failed", "watch")
    assert newest["failed"] == "Kustomization/flux-system/apps"
    assert older["commit"] == sha


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_wait_records_while_the_tray_follows_the_same_push_and_one_record_stands(fleet: Fleet) -> None:
    tray = Engine(kubeconfig=str(fleet.cluster.kubeconfig), state_dir=state_dir(fleet))
    tray.take_locks()  # what the tray holds while it runs: wait must record without it
    try:
        tray.start()
        sha = fleet.commit_and_push(SCALE_WEB, "Scale web to 3")
        spec = SessionSpec(
            id="captured-by-the-hooks",
            remote_url=fleet.git("remote", "get-url", "origin"),
            branch="main",
            commit=sha,
            repo=str(fleet.work),
        )
        assert tray.add(spec)
        waited = follow(fleet, "wait")
        final = tray.wait_final(spec.id, timeout=PATIENCE_SECONDS)
    finally:
        tray.close()
    assert waited.returncode == 0, waited.stderr
    assert "not in the history" not in waited.stderr
    assert final is not None
    assert final.state is SessionState.SUCCEEDED
    (recorded,) = history(fleet)  # whichever recorded first, the history has the push once
    assert (recorded["commit"], recorded["state"]) == (sha, "succeeded")
    lines = [json.loads(line) for line in (state_dir(fleet) / HISTORY_FILE).read_text().splitlines()]
    assert {line["follower"] for line in lines} <= {OWNER, "wait"}
    assert any(line["follower"] == OWNER for line in lines)  # the tray's own record is never skipped
