"""The real tray on the headless desktop following one push on two clusters (issue 13): staging and production,
each a simulated API server with its own Flux, on their own paths of one repository (harness/simfleet.py), pushed
to with real `git push`es through fluxmon's hooks. What a user sees is read as in tests/test_tray.py: the icon's
pixels, the tooltip the tray logs, the notification server's records, the windows on the screen."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluxmon.core.marks import TrayState
from harness.desktop import Desktop, wait_until
from harness.processes import children
from harness.running import Running
from harness.simfleet import SCALE_WEB, FleetUnderTest, break_settings, fix_settings
from tests.test_tray import FAILED_TEXT, Tray, _count_colour, _details_title, notify_calls

StartTray = Callable[..., Tray]
SCREENSHOT_DIR = os.environ.get("FLUXMON_SCREENSHOT_DIR", "")
"""Set it to refresh the README's screenshot (docs/tray-clusters.png): the details window of a push that failed on
production and deployed to staging, with both notifications."""


@pytest.fixture
def start_tray(desktop: Desktop, sim_fleet: FleetUnderTest, tmp_path: Path) -> Iterator[StartTray]:
    started: list[Tray] = []

    def start(*args: str, state: TrayState = TrayState.IDLE) -> Tray:
        """`fluxmon tray --kubeconfig <every cluster's context> ARGS`, its icon docked in trayer showing `state`."""
        runtime = tmp_path / "run"
        scratch = tmp_path / "tmp"
        for folder in (runtime, scratch):
            folder.mkdir(mode=0o700, exist_ok=True)
        env = {
            **sim_fleet.env,
            **desktop.env,
            "XDG_RUNTIME_DIR": str(runtime),
            "TMPDIR": str(scratch),
            "FLUXMON_LOG": "DEBUG",
            "PYSTRAY_BACKEND": "gtk",
        }
        command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(sim_fleet.kubeconfig), *args]
        tray = Tray(running=Running(command, env=env), desktop=desktop, env=env, runtime=runtime, scratch=scratch)
        started.append(tray)
        tray.running.expect_stderr("tray started")
        tray.wait_state(state)
        # The tray, dunst and the bus monitor outlive every push: not hook processes for a push to wait for.
        sim_fleet.repos.elders.update(children())
        return tray

    yield start
    for tray in started:
        if tray.running.process.poll() is None:
            tray.running.kill()


def icon_line(tray: Tray, text: str) -> str:
    """The tray's next `icon:` log line (its state and tooltip) that says `text`."""
    return tray.running.expect(lambda _name, line: line.startswith("fluxmon: icon: ") and text in line, text)


def test_one_push_on_two_clusters_deployed_then_broken_on_one_named_once_then_fixed_there(
    desktop: Desktop, sim_fleet: FleetUnderTest, start_tray: StartTray
) -> None:
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        tray = start_tray("--context", "staging", "--context", "production")
        good = sim_fleet.commit_and_push(SCALE_WEB, "scale web")
        tray.wait_state(TrayState.DEPLOYED)
        icon_line(tray, f"main@{good[:7]} deployed to staging, production")  # the tooltip says where
        wait_until(lambda: dunst.displayed() == 1, "the success on screen")
        (call,) = notify_calls(monitor)
        assert f"deployed to staging, production — main@{good[:7]}" in call

        broken = sim_fleet.commit_and_push(break_settings("production"), "break production's settings")
        tray.wait_state(TrayState.FAILED)  # the worst across the clusters, as soon as one fails
        wait_until(lambda: len(notify_calls(monitor)) == 2, "the failure notified")
        failure = notify_calls(monitor)[1]
        assert f"✗ apps failed on production — main@{broken[:7]}" in failure
        assert "byte 2" in failure  # critical
        # Staging deploys the same push: the tooltip says so, and the push's one failure stays one notification.
        icon_line(tray, f"main@{broken[:7]} failed on production: Kustomization/apps BuildFailed · deployed to staging")
        assert len(notify_calls(monitor)) == 2
        assert sum(line.startswith("fluxmon: notifying: ") for line in tray.running.stderr) == 2

        tray.open_menu_item("Down", "Down", "Return")  # the summary line, then "Show details…"
        title = _details_title(broken)
        wait_until(lambda: desktop.find_window(name=title), "the details window, a tab per cluster")
        # Drawn once the failed row's red shows: the window opens on production's tab, where apps failed.
        wait_until(lambda: _count_colour(desktop.grab(), FAILED_TEXT) > 100, "the failed cluster's tab drawn")
        if SCREENSHOT_DIR:
            desktop.grab().crop((0, 0, 1366, 680)).save(Path(SCREENSHOT_DIR) / "tray-clusters.png")
        desktop.close_window(title)
        tray.running.expect_stderr("details window closed")

        # Reconcile now ▸ On every cluster: each cluster asked for its own source and Kustomizations.
        tray.open_menu_item("Down", "Down", "Down", "Down", "Right", "Return")
        asked = [tray.running.expect_stderr("requested a reconcile of") for _ in range(2)]
        assert sorted(line.rsplit(" on ", 1)[1] for line in asked) == ["production", "staging"]
        assert all("GitRepository/flux-system" in line for line in asked)

        fixed = sim_fleet.commit_and_push(fix_settings("production"), "fix production's settings")
        tray.wait_state(TrayState.DEPLOYED)
        wait_until(lambda: len(notify_calls(monitor)) == 3, "the fix notified")
        assert f"fixed on production — main@{fixed[:7]}" in notify_calls(monitor)[2]  # where the failure was
        closed = wait_until(dunst.history, "the failure's notification closed")
        assert [entry["summary"] for entry in closed] == [f"✗ apps failed on production — main@{broken[:7]}"]
        assert tray.stop() == 0
    assert "Traceback" not in "\n".join(tray.running.stderr)


def test_the_contexts_of_the_config_file_apply_while_the_tray_runs(
    desktop: Desktop, sim_fleet: FleetUnderTest, start_tray: StartTray
) -> None:
    """Started on the kubeconfig's current context (staging), the tray follows both once the config names them; a
    cluster that goes away is named in the tooltip, and its failure comes with the cluster's name."""
    config = Path(sim_fleet.env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"
    with desktop.notification_daemon(), desktop.bus_monitor() as monitor:
        tray = start_tray()
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('contexts = ["staging", "production"]\n', encoding="utf-8")
        tray.running.expect_stderr("following the cluster again with the new settings")

        sim_fleet.down("production")
        tray.wait_state(TrayState.UNREACHABLE)
        assert "cluster production: " in icon_line(tray, "cluster production: ")
        sim_fleet.up("production")
        tray.wait_state(TrayState.IDLE)

        broken = sim_fleet.commit_and_push(break_settings("production"), "break production's settings")
        tray.wait_state(TrayState.FAILED)
        wait_until(lambda: len(notify_calls(monitor)) == 1, "the failure notified")
        assert f"✗ apps failed on production — main@{broken[:7]}" in notify_calls(monitor)[0]
        assert tray.stop() == 0


def test_a_context_that_cannot_be_followed_is_named_and_the_others_are_followed(
    sim_fleet: FleetUnderTest, start_tray: StartTray
) -> None:
    tray = start_tray("--context", "staging", "--context", "qa", state=TrayState.UNREACHABLE)
    line = icon_line(tray, "cluster qa: ")
    assert f"{sim_fleet.kubeconfig} has no context 'qa' (its contexts: staging, production)" in line
    sha = sim_fleet.commit_and_push(SCALE_WEB, "scale web")
    icon_line(tray, f"main@{sha[:7]} succeeded")  # staging is followed all the same
    assert tray.stop() == 0
