"""The tray, lived with for days (issue 11, items 21-26): what went wrong after hundreds of pushes, each proven
fixed against the real pieces (the simulated cluster over HTTP, git, and the headless desktop of tests.desktop)."""

from __future__ import annotations

import gc
import logging
import queue
import sys
import tracemalloc
from pathlib import Path

import pytest

from fluxmon.core.config import Config
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.overview import TrayState
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.store import SessionStore
from fluxmon.tray.app import TrayApp, TrayOptions
from tests.desktop import Desktop, wait_until
from tests.fleet import BROKEN_YAML, Fleet, edit
from tests.gitrepos import isolated_env
from tests.running import Running
from tests.snapshots import failed_snapshot
from tests.test_tray import StartTray, _notify_calls, start_tray

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
    assert growth < MEASURED_SESSIONS * GROWTH_LIMIT_BYTES_PER_SESSION, f"{growth} bytes more"
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


# --- 23: an outcome is never lost between the history and the notification ------------------------------------


@ONLY_THE_SIMULATOR
def test_an_outcome_that_could_not_be_notified_is_notified_at_the_next_start_and_only_once(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    tray = start_tray()  # no notification server yet: the failure cannot go out
    sha = fleet.commit_and_push(BROKEN_YAML, "break web")
    tray.wait_state(TrayState.FAILED)
    tray.running.expect_stderr("no notification server")
    assert tray.stop() == 0
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        again = start_tray(state=TrayState.FAILED)
        wait_until(lambda: dunst.displayed() == 1, "the failure, notified late")
        (call,) = _notify_calls(monitor)
        assert f"✗ apps failed — main@{sha[:7]}" in call
        assert again.stop() == 0
        third = start_tray(state=TrayState.FAILED)
        assert third.stop() == 0  # waits for every send it started
        assert len(_notify_calls(monitor)) == 1  # told once: never again


@pytest.mark.filterwarnings("ignore:GObject.idle_add is deprecated")  # pystray's gtk backend, in this process
def test_an_orderly_stop_notifies_the_snapshots_still_queued(
    desktop: Desktop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that ends while the tray stops is told before it goes (the stand-in for the engine's last post
    is a log handler that posts as the tray says it is stopping, on the UI thread, so the order is certain)."""
    for key, value in {**desktop.env, "PYSTRAY_BACKEND": "gtk", "FLUXMON_NOTIFIER": "dbus"}.items():
        monkeypatch.setenv(key, value)
    options = TrayOptions(
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        config=Config(),
        kubeconfig=str(tmp_path / "no-kubeconfig"),
        icon_dir=tmp_path / "icons",
    )
    app = TrayApp(options)
    late = failed_snapshot(id="late")

    class Cue(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("tray started"):
                app.quit()
            elif record.getMessage() == "tray stopping":
                app.post("snapshot", late)

    cue = Cue()
    logger = logging.getLogger("fluxmon.tray")
    logger.addHandler(cue)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with desktop.notification_daemon() as dunst:
            assert app.run(backend="gtk") == 0
            assert dunst.displayed() == 1
    finally:
        logger.removeHandler(cue)
        logger.setLevel(previous_level)


# --- 26: what people expect of a build light -------------------------------------------------------------------

FIX_YAML = edit("apps/web.yaml", "\n    oops: [unclosed", "")


@ONLY_THE_SIMULATOR
def test_a_fix_closes_the_failures_notification_and_says_fixed(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        tray = start_tray()
        broken = fleet.commit_and_push(BROKEN_YAML, "break web")
        tray.wait_state(TrayState.FAILED)
        wait_until(lambda: dunst.displayed() == 1, "the failure on screen")
        fixed = fleet.commit_and_push(FIX_YAML, "fix web")
        tray.wait_state(TrayState.DEPLOYED)
        wait_until(lambda: len(_notify_calls(monitor)) == 2, "the fix notified")
        assert f"✔ fleet fixed — main@{fixed[:7]}" in _notify_calls(monitor)[1]
        closed = wait_until(dunst.history, "the failure's notification closed")
        assert [entry["summary"] for entry in closed] == [f"✗ apps failed — main@{broken[:7]}"]
        assert dunst.displayed() == 1  # only the good news is left on screen
        assert tray.stop() == 0


# --- 24: the X server goes away ------------------------------------------------------------------------------


def test_when_the_x_server_goes_away_the_tray_says_so_in_one_line_and_exits_2(desktop: Desktop, tmp_path: Path) -> None:
    """Its own Xvfb (the module's desktop serves the other tests): killed under a running tray."""
    private = Desktop(tmp_path / "desktop")
    try:
        private.start()
        env = {
            **isolated_env(tmp_path),
            **private.env,
            "XDG_RUNTIME_DIR": str(tmp_path),
            "PYSTRAY_BACKEND": "gtk",
            "FLUXMON_LOG": "INFO",
        }
        tray = Running([sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(tmp_path / "none")], env=env)
        tray.expect_stderr("tray started")
        tray.expect_stderr("icon: unreachable")  # settled: the missing kubeconfig is said
        said = len(tray.stderr)
        xvfb = private.processes[0]
        xvfb.terminate()
        xvfb.wait(30)
        code = tray.finish(timeout=30)
    finally:
        private.stop()
    last_words = tray.stderr[said:]
    assert code == 2, last_words
    assert len(last_words) == 1, last_words
    assert last_words[0].startswith(f"fluxmon: the display {private.display} went away"), last_words


# --- 25: the icon recovers with the cluster ------------------------------------------------------------------

FAILURES_BEFORE_RETURN = 7
"""The cluster stays away this many tries of each kind: with a 30 s backoff the next try would be 15-30 s off."""
RECOVERY_SECONDS = 8.0
"""'Within a few seconds' of the API server's return, the icon no longer says it cannot reach it."""


@ONLY_THE_SIMULATOR
def test_the_icon_clears_within_seconds_once_the_api_server_is_back(fleet: Fleet, start_tray: StartTray) -> None:
    assert fleet.cluster.sim is not None
    tray = start_tray()
    fleet.cluster.sim.stop()
    tray.wait_state(TrayState.UNREACHABLE)
    failures = 0

    def counted(_name: str, line: str) -> bool:
        nonlocal failures
        failures += line.startswith("fluxmon: GitRepository: ") and "retrying in" in line
        return failures >= FAILURES_BEFORE_RETURN

    tray.running.expect(counted, f"{FAILURES_BEFORE_RETURN} failed tries to reach the cluster")
    fleet.cluster.sim.start()
    wait_until(lambda: tray.icon_state() is TrayState.IDLE, "the icon to recover", RECOVERY_SECONDS)
    assert tray.stop() == 0
