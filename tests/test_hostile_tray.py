"""The tray, lived with for days (issue 11, items 21-26): what went wrong after hundreds of pushes, each proven
fixed against the real pieces (the simulated cluster over HTTP, git, and the headless desktop of tests.desktop)."""

from __future__ import annotations

import gc
import queue
import sys
import tracemalloc
from pathlib import Path

import pytest

from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.store import SessionStore
from tests.desktop import Desktop
from tests.fleet import BROKEN_YAML, Fleet
from tests.running import Running
from tests.test_tray import StartTray, start_tray

__all__ = ["start_tray"]  # the fixture, shared with the tray's own tests

ONLY_THE_SIMULATOR = pytest.mark.parametrize("cluster", ["sim"], indirect=True)
FINAL_TIMEOUT_SECONDS = 30.0

# --- 21: memory ----------------------------------------------------------------------------------------------

WARM_UP_SESSIONS = 100
MEASURED_SESSIONS = 400
GROWTH_LIMIT_BYTES_PER_SESSION = 1024
"""What one finished session may still cost once it is in the history: about nothing (before: ~30 kB each)."""


@ONLY_THE_SIMULATOR
def test_five_hundred_failed_sessions_leave_the_managers_memory_flat(fleet: Fleet, tmp_path: Path) -> None:
    broken = fleet.push(BROKEN_YAML, "break web")
    fleet.watcher.wait_for(
        lambda objects: fleet.watcher.phase("Kustomization/apps", broken).value == "Failed", what="apps failed"
    )
    fleet.controllers.stop()  # a quiet cluster: only the manager allocates from here on
    remote = fleet.git("remote", "get-url", "origin")
    cluster = Cluster.connect(kubeconfig=str(fleet.cluster.kubeconfig))
    finals: queue.Queue[SessionSnapshot] = queue.Queue()
    manager = SessionManager(cluster, store=SessionStore(tmp_path / "state"))
    manager.subscribe(lambda snapshot: finals.put(snapshot) if snapshot.state.final else None)
    manager.start()

    def follow(count: int, start: int) -> None:
        for number in range(start, start + count):
            manager.add(
                SessionSpec(id=f"s{number}", remote_url=remote, branch="main", commit=broken, repo=str(fleet.work))
            )
            final = finals.get(timeout=FINAL_TIMEOUT_SECONDS)
            assert (final.id, final.state) == (f"s{number}", SessionState.FAILED)

    try:
        tracemalloc.start()
        follow(WARM_UP_SESSIONS, 0)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        follow(MEASURED_SESSIONS, WARM_UP_SESSIONS)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        manager.stop()
        cluster.close()
    growth = after - before
    print(f"memory growth over {MEASURED_SESSIONS} sessions: {growth} bytes")
    assert growth < MEASURED_SESSIONS * GROWTH_LIMIT_BYTES_PER_SESSION
    assert len(SessionStore(tmp_path / "state").history(limit=1000)) >= 200  # the outcomes live on in the store


# --- 22: one tray per user -----------------------------------------------------------------------------------


@ONLY_THE_SIMULATOR
def test_a_second_tray_is_refused_even_when_its_spool_is_elsewhere(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    """Autostart sets XDG_RUNTIME_DIR, a terminal over ssh may not: the spools differ, the state folder does not."""
    tray = start_tray()
    Path(tray.env["XDG_STATE_HOME"]).mkdir(parents=True, exist_ok=True)  # ~/.local/state, as on any desktop
    elsewhere = {k: v for k, v in tray.env.items() if k not in ("XDG_RUNTIME_DIR", "FLUXMON_SPOOL_DIR")}
    command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(fleet.cluster.kubeconfig)]
    second = Running(command, env=elsewhere)
    try:
        second.expect(lambda _name, line: "already running" in line or "tray started" in line, "the second's fate")
        assert second.finish(timeout=30) == 2
    finally:
        second.kill()
    stderr = "\n".join(second.stderr)
    assert "fluxmon is already running" in stderr
    assert f"(pid {tray.running.process.pid}," in stderr
    assert "tray started" not in stderr
    assert tray.stop() == 0
