"""The tray, lived with for days (issue 11, items 21-26): what went wrong after hundreds of pushes, each proven
fixed against the real pieces (the simulated cluster over HTTP, git, and the headless desktop of harness.desktop)."""

from __future__ import annotations

import gc
import queue
import sys
import tracemalloc
from pathlib import Path

import pytest

from fluxmon.core.config import Config, reload_user_config
from fluxmon.core.engine import Engine
from fluxmon.core.marks import TrayState
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.store import SessionStore
from fluxmon.tray.menu import Action, MenuAction, build_menu
from harness.desktop import Desktop, wait_until
from harness.gitrepos import isolated_env
from harness.running import Running
from tests.fleet import BROKEN_YAML, SCALE_WEB, Fleet, edit
from tests.test_tray import StartTray, notify_calls, start_tray

__all__ = ["start_tray"]  # the fixture of the tray's own tests, imported to be used here too

ONLY_THE_SIMULATOR = pytest.mark.parametrize("cluster", ["sim"], indirect=True)
FINAL_TIMEOUT_SECONDS = 30.0

# --- 21: memory ----------------------------------------------------------------------------------------------

WARM_UP_SESSIONS = 100
MEASURED_SESSIONS = 400
GROWTH_LIMIT_BYTES_PER_SESSION = 1024
"""What one finished session may still cost once it is in the history: about nothing (before: 8 kB each here)."""


def growth_of(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> int:
    """Bytes more in `after`, but for one new block over 1 MiB: CPython's interned-string table, which a churn of
    unique names (a file per session) makes it rebuild now and then. Its old copy predates tracemalloc.start(), so a
    rebuild counts as MBs of growth at once (pathlib's sys.intern); what a session leaks shows as many small ones."""
    return sum(
        stat.size_diff
        for stat in after.compare_to(before, "lineno")
        if not (stat.count_diff == 1 and stat.size_diff > 1 << 20)
    )


@ONLY_THE_SIMULATOR
def test_five_hundred_failed_sessions_leave_the_engines_memory_flat(fleet: Fleet, tmp_path: Path) -> None:
    broken = fleet.push(BROKEN_YAML, "break web")
    fleet.watcher.wait_for(
        lambda objects: fleet.watcher.phase("Kustomization/apps", broken).value == "Failed", what="apps failed"
    )
    fleet.controllers.stop()  # a quiet cluster: only the engine allocates from here on
    remote = fleet.git("remote", "get-url", "origin")
    finals: queue.Queue[PushSnapshot] = queue.Queue()
    engine = Engine(kubeconfig=str(fleet.cluster.kubeconfig), state_dir=tmp_path / "state")
    engine.subscribe(lambda push: finals.put(push) if push.settled else None)
    engine.start()

    def follow(count: int, start: int) -> None:
        for number in range(start, start + count):
            engine.add(
                SessionSpec(id=f"s{number}", remote_url=remote, branch="main", commit=broken, repo=str(fleet.work))
            )
            final = finals.get(timeout=FINAL_TIMEOUT_SECONDS)
            assert (final.id, final.state) == (f"s{number}", SessionState.FAILED)

    try:
        tracemalloc.start()
        follow(WARM_UP_SESSIONS, 0)
        gc.collect()
        before = tracemalloc.take_snapshot()
        follow(MEASURED_SESSIONS, WARM_UP_SESSIONS)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        engine.close()
    growth = growth_of(before, after)
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
        (call,) = notify_calls(monitor)
        assert f"✗ apps failed — main@{sha[:7]}" in call
        assert again.stop() == 0
        third = start_tray(state=TrayState.FAILED)
        assert third.stop() == 0  # waits for every send it started
        assert len(notify_calls(monitor)) == 1  # told once: never again


def test_an_orderly_stop_notifies_the_snapshots_still_queued(desktop: Desktop, tmp_path: Path) -> None:
    """A session that ends while the tray stops is told before it goes (tests.stop_probe hands it over then)."""
    env = {**isolated_env(tmp_path), **desktop.env, "PYSTRAY_BACKEND": "gtk", "FLUXMON_NOTIFIER": "dbus"}
    with desktop.notification_daemon() as dunst:
        probe = Running([sys.executable, "-m", "tests.stop_probe", str(tmp_path)], env=env)
        assert probe.finish(timeout=60) == 0, probe.stderr
        assert "fluxmon: notifying: ✗ apps failed — main@1a2b3c4" in probe.stderr
        assert dunst.displayed() == 1  # the notifier's stop waited for it


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
        wait_until(lambda: len(notify_calls(monitor)) == 2, "the fix notified")
        assert f"✔ fleet fixed — main@{fixed[:7]}" in notify_calls(monitor)[1]
        closed = wait_until(dunst.history, "the failure's notification closed")
        assert [entry["summary"] for entry in closed] == [f"✗ apps failed — main@{broken[:7]}"]
        assert dunst.displayed() == 1  # only the good news is left on screen
        assert tray.stop() == 0


# --- 24: the X server goes away ------------------------------------------------------------------------------


def test_when_the_x_server_goes_away_the_tray_says_so_in_one_line_and_exits_2(desktop: Desktop, tmp_path: Path) -> None:
    """Its own Xvfb (the module's desktop serves the other tests), killed under a running tray."""
    private = Desktop(tmp_path / "desktop")
    try:
        private.start_display()
        env = {
            **isolated_env(tmp_path),
            **desktop.env,
            "DISPLAY": private.display,
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
"""'Within a few seconds' of the API server's return, the icon no longer says it cannot reach it. A deadline that
is the requirement itself, four times the longest wait between tries; before the fix the next try was 15-30 s off."""


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


@ONLY_THE_SIMULATOR
def test_pause_until_tomorrow_survives_a_restart(fleet: Fleet, start_tray: StartTray) -> None:
    tray = start_tray()
    tray.open_menu_item("Up", "Up", "Up", "Up", "Right", "Down", "Return")  # Quit, Report…, Open config, Pause ▸ …
    line = tray.running.expect_stderr("notifications paused until")
    tray.wait_state(TrayState.PAUSED)
    assert tray.stop() == 0
    again = start_tray(state=TrayState.PAUSED)
    assert line in again.running.stderr  # the same end, read back (said before "tray started")
    assert again.stop() == 0


@ONLY_THE_SIMULATOR
def test_a_failure_on_a_branch_flux_no_longer_follows_stops_counting(fleet: Fleet, start_tray: StartTray) -> None:
    tray = start_tray()
    fleet.commit_and_push(BROKEN_YAML, "break web")
    tray.wait_state(TrayState.FAILED)
    sources = fleet.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
    fleet.cluster.admin.patch(sources, "flux-system", "flux-system", {"spec": {"ref": {"branch": "release"}}})
    tray.wait_state(TrayState.IDLE)  # main's failure can never be fixed by a push Flux will fetch
    line = tray.running.expect_stderr("no longer follows")
    assert "main" in line
    assert tray.stop() == 0


@ONLY_THE_SIMULATOR
def test_the_config_file_is_applied_while_the_tray_runs_and_a_bad_one_is_shown(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    config = Path(fleet.env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"
    with desktop.notification_daemon(), desktop.bus_monitor() as monitor:
        tray = start_tray()
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('notify_on = ["failed", "sometimes"]\n', encoding="utf-8")
        line = tray.running.expect_stderr("icon: attention")  # said where autostarted users look: the tray
        assert f"config: {config}: notify_on: unknown outcomes ['sometimes']" in line
        config.write_text('notify_on = ["failed"]\n', encoding="utf-8")  # only failures, from now on
        tray.running.expect_stderr(f"applied the settings in {config}")
        tray.wait_state(TrayState.IDLE)
        fleet.commit_and_push(SCALE_WEB, "scale web")
        tray.wait_state(TrayState.DEPLOYED)
        # Other kinds to watch: the engine starts again with them, and goes on following pushes.
        config.write_text('notify_on = ["failed"]\nmonitor_types = ["GitRepository", "Kustomization"]\n')
        tray.running.expect_stderr("following the cluster again with the new settings")
        sha = fleet.commit_and_push(edit("apps/web.yaml", "replicas: 3", "replicas: 4"), "scale web again")
        tray.running.expect(lambda _name, line: f"main@{sha[:7]} succeeded" in line, "the next push deployed")
        assert tray.stop() == 0  # waits for any send it started
        assert notify_calls(monitor) == []


def test_a_config_file_that_turns_invalid_keeps_the_settings_in_force_and_says_why(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    path = tmp_path / "fluxmon" / "config.toml"
    path.parent.mkdir()
    path.write_text('notify_on = ["failed"]\ntimeout = "10m"\n', encoding="utf-8")
    in_force = reload_user_config(Config(), environ)
    assert (in_force.notify_on, in_force.timeout_seconds, in_force.warnings) == (("failed",), 600.0, ())
    path.write_text('timeout = "soon"\n', encoding="utf-8")
    kept = reload_user_config(in_force, environ)
    assert (kept.notify_on, kept.timeout_seconds) == (("failed",), 600.0)  # not the defaults
    (warning,) = kept.warnings
    assert warning.startswith(f"{path}: timeout: expected a duration")
    assert warning.endswith("keeping the settings in force until it is fixed")
    menu = build_menu(summary="-", recent=[], paused_until=None, can_reconcile=False, config_problem=warning)
    assert menu[0].text.startswith("⚠ Settings not applied: config.toml: timeout: expected a duration")
    assert menu[0].action == Action(MenuAction.OPEN_CONFIG)
