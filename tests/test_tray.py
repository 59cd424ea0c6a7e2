"""The real tray on a real headless desktop: `fluxmon tray` under Xvfb, docked in trayer, notifying dunst over a
private D-Bus session bus, following real pushes to the sample fleet on the simulated cluster.

What a user sees is read the way a user sees it: the icon's pixels, the notification server's own records
(dbus-monitor and dunstctl), and the windows on the screen. Menus are driven with the mouse and keyboard.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from fluxmon.core import hookinstall
from fluxmon.core.marks import TrayState
from harness.desktop import Desktop, Dunst, wait_until
from harness.gitrepos import isolated_env
from harness.processes import children, wait_for_children
from harness.running import Running
from tests.fleet import BROKEN_YAML, SCALE_WEB, Fleet, edit
from tests.sni import StatusNotifierWatcher, labels

STATE_COLOURS = {
    TrayState.IDLE: (120, 128, 138),
    TrayState.DEPLOYING: (33, 118, 214),
    TrayState.DEPLOYED: (40, 160, 70),
    TrayState.FAILED: (210, 36, 48),
    TrayState.ATTENTION: (232, 150, 20),
    TrayState.PAUSED: (128, 96, 176),
    TrayState.UNREACHABLE: (96, 100, 108),
}
"""The discs' fill colours in assets/icons (scripts/render-icons)."""
STATE_TIMEOUT_SECONDS = 30.0
SLOW_ENOUGH_TO_SEE = pytest.mark.timings(build_seconds=0.5, fetch_seconds=0.3)
"""The icon must be seen deploying before it is deployed: each Kustomization builds for half a second."""
ONLY_THE_SIMULATOR = pytest.mark.parametrize("cluster", ["sim"], indirect=True)
"""The tray adds nothing cluster-specific; the monitor's tests cover the real kube-apiserver."""


@dataclass
class Tray:
    """`fluxmon tray` running on the desktop, and how to read its icon."""

    running: Running
    desktop: Desktop
    env: dict[str, str]
    runtime: Path
    scratch: Path

    def icon_state(self) -> TrayState | None:
        """The state whose colour fills most of the docked icon, or None if no icon is docked."""
        image = self.desktop.grab(self.desktop.geometry(self.desktop.trayer_window)).convert("RGB")
        counts = dict.fromkeys(STATE_COLOURS, 0)
        colours: list[tuple[int, tuple[int, int, int]]] = image.getcolors(1 << 16) or []  # type: ignore[assignment]
        for count, (red, green, blue) in colours:
            for state, (r, g, b) in STATE_COLOURS.items():
                if abs(red - r) + abs(green - g) + abs(blue - b) < 30:
                    counts[state] += count
        state, count = max(counts.items(), key=lambda item: item[1])
        return state if count > 40 else None

    def wait_state(self, state: TrayState) -> None:
        try:
            wait_until(lambda: self.icon_state() is state, f"the icon to show {state.value}", STATE_TIMEOUT_SECONDS)
        except AssertionError as exc:
            self.running.collected()
            log = "\n".join(self.running.stderr[-30:])
            raise AssertionError(f"{exc}; it shows {self.icon_state()}; the tray said:\n{log}") from None

    def icon_centre(self) -> tuple[int, int]:
        x, y, width, height = self.desktop.geometry(self.desktop.trayer_window)
        image = self.desktop.grab((x, y, width, height)).convert("RGB")
        points = [
            (px, py)
            for px in range(width)
            for py in range(height)
            if sum(image.getpixel((px, py))) < 200  # the icon's dark rim
        ]
        assert points, "no icon docked in trayer"
        return x + sum(p[0] for p in points) // len(points), y + sum(p[1] for p in points) // len(points)

    def open_menu_item(self, *keys: str) -> None:
        """Right-click the icon, then walk its menu with the keyboard, as a user without a mouse would."""
        x, y = self.icon_centre()
        before = set(self.desktop.xdotool("search", "--onlyvisible", "--name", "").split())
        self.desktop.xdotool("mousemove", str(x), str(y), "click", "3")
        wait_until(
            lambda: set(self.desktop.xdotool("search", "--onlyvisible", "--name", "").split()) - before,
            "the menu to pop up",
        )
        self.desktop.xdotool("key", "--delay", "50", *keys)

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        self.running.process.send_signal(signum)
        return self.running.finish(timeout=30)


StartTray = Callable[..., Tray]


@pytest.fixture
def start_tray(desktop: Desktop, fleet: Fleet, tmp_path: Path) -> Iterator[StartTray]:
    hookinstall.install(repo=fleet.work)
    started: list[Tray] = []

    def start(
        *, kubeconfig: Path = fleet.cluster.kubeconfig, state: TrayState | None = TrayState.IDLE, backend: str = "gtk"
    ) -> Tray:
        """`state`: wait for trayer to show the icon so; `backend`: "" lets the tray choose (appindicator here)."""
        runtime = tmp_path / "run"
        scratch = tmp_path / "tmp"
        for folder in (runtime, scratch):
            folder.mkdir(mode=0o700, exist_ok=True)
        env = {
            **fleet.env,
            **desktop.env,
            "XDG_RUNTIME_DIR": str(runtime),
            "TMPDIR": str(scratch),  # where pystray would have left its icon files
            "FLUXMON_LOG": "DEBUG",
        }
        if backend:
            env["PYSTRAY_BACKEND"] = backend  # trayer hosts XEmbed icons (gtk); the appindicator test has its host
        command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(kubeconfig)]
        tray = Tray(running=Running(command, env=env), desktop=desktop, env=env, runtime=runtime, scratch=scratch)
        started.append(tray)
        tray.running.expect_stderr("tray started")
        if state is not None:
            tray.wait_state(state)
        return tray

    yield start
    for tray in started:
        if tray.running.process.poll() is None:
            tray.running.kill()


def _push_and_watch(
    fleet: Fleet, tray: Tray, dunst: Dunst, monitor: Running, change: Callable[[Path], None], final: TrayState
) -> tuple[str, str]:
    """Push a change; see the icon deploying, then `final`, and exactly one notification: (sha, its Notify call)."""
    sha = fleet.commit_and_push(change, f"a change the tray should show as {final.value}")
    tray.wait_state(TrayState.DEPLOYING)
    tray.wait_state(final)
    wait_until(lambda: dunst.displayed() == 1, "the notification on screen")
    calls = notify_calls(monitor)
    assert len(calls) == 1, calls
    return sha, calls[0]


FAILED_TEXT = (179, 20, 31)
"""tray/details.py draws failed text in this colour."""


def _count_colour(image: Image.Image, colour: tuple[int, int, int]) -> int:
    colours: list[tuple[int, tuple[int, int, int]]] = image.convert("RGB").getcolors(1 << 20) or []  # type: ignore[assignment]
    return sum(count for count, pixel in colours if pixel == colour)


def _details_title(sha: str) -> str:
    """A regex for the window's title, `Flux Push Monitor — main@1a2b3c4` (xdotool's regex cannot take the dash)."""
    return f"^Flux Push Monitor .* main@{sha[:7]}$"


def notify_calls(monitor: Running) -> list[str]:
    """The Notify method calls dbus-monitor has printed so far, each as one block of text."""
    text = "\n".join(monitor.collected())
    return [block for block in text.split("method call")[1:] if "member=Notify" in block.splitlines()[0]]


@ONLY_THE_SIMULATOR
@SLOW_ENOUGH_TO_SEE
def test_a_good_push_turns_the_icon_blue_then_green_and_notifies_once(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        tray = start_tray()
        sha, call = _push_and_watch(fleet, tray, dunst, monitor, SCALE_WEB, TrayState.DEPLOYED)
        assert f"✔ fleet deployed — main@{sha[:7]}" in call
        assert "byte 1" in call  # urgency normal
        tray.running.expect_stderr("icon: deployed")
        tray.open_menu_item("Up", "Return")  # Up from the top: the last item, Quit
        assert tray.running.finish(timeout=30) == 0
    stderr = "\n".join(tray.running.stderr)
    assert "tray stopped" in stderr
    assert "still running" not in stderr  # every thread it started has ended
    assert "Traceback" not in stderr


@ONLY_THE_SIMULATOR
@SLOW_ENOUGH_TO_SEE
def test_a_failed_push_turns_red_notifies_critically_once_and_view_details_opens_the_window(
    desktop: Desktop,
    fleet: Fleet,
    start_tray: StartTray,
) -> None:
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        tray = start_tray()
        sha, call = _push_and_watch(fleet, tray, dunst, monitor, BROKEN_YAML, TrayState.FAILED)
        assert f"✗ apps failed — main@{sha[:7]}" in call
        assert "Kustomization/apps: BuildFailed" in call
        assert "byte 2" in call  # urgency critical
        assert "View details" in call

        dunst.view_details()  # the notification's own button
        tray.running.expect_stderr("details window opened")
        title = _details_title(sha)
        wait_until(lambda: desktop.find_window(name=title), "the details window")
        # Drawn once its failed row's red shows (the selected failed row and the outcome line use it).
        wait_until(lambda: _count_colour(desktop.grab(), FAILED_TEXT) > 100, "the details window drawn")
        desktop.close_window(title)
        tray.running.expect_stderr("details window closed")
        # The failure stays one notification, also after the session's later snapshots.
        assert len(notify_calls(monitor)) == 1
        assert tray.stop() == 0
    assert not any(tray.scratch.iterdir()), "temporary files left behind"
    assert not (tray.runtime / "fluxmon" / "icons").exists(), "icon files left behind"


@ONLY_THE_SIMULATOR
@SLOW_ENOUGH_TO_SEE
def test_the_menu_opens_details_and_pause_silences_notifications(
    desktop: Desktop,
    fleet: Fleet,
    start_tray: StartTray,
) -> None:
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        tray = start_tray()
        sha = fleet.commit_and_push(SCALE_WEB, "scale web")
        tray.wait_state(TrayState.DEPLOYED)
        wait_until(lambda: dunst.displayed() == 1, "the success notification")
        tray.running.expect_stderr("notifying: ✔")  # the menu is rebuilt (and logged at DEBUG) right after
        tray.running.expect(lambda _name, line: line == "Quit", "the menu's outline, to its end")
        start = len(tray.running.stderr) - tray.running.stderr[::-1].index("fluxmon: menu:")
        outline = [re.sub(r"\(\d+s\)", "(…)", line) for line in tray.running.stderr[start:]]
        assert outline == [
            f"✔ main@{sha[:7]} succeeded (…)",
            "Show details…",
            "Recent sessions",
            f"  ✔ main@{sha[:7]} succeeded (…)",
            "- (disabled)",
            "Reconcile now",
            "Pause notifications",
            "  Not paused (disabled)",
            "  For 1 hour",
            "  Until tomorrow",
            "  Resume (disabled)",
            "Open config",
            "Report…",
            "- (disabled)",
            "Quit",
        ]

        # Down: the summary line; Down: "Show details…".
        tray.open_menu_item("Down", "Down", "Return")
        wait_until(lambda: desktop.find_window(name=_details_title(sha)), "the details window from the menu")
        desktop.close_window(_details_title(sha))

        # Reconcile now: the summary, Show details…, Recent sessions, then (past the separator) Reconcile now.
        sources = fleet.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")

        def requested_at() -> str:
            source = fleet.cluster.admin.get(sources, "flux-system", "flux-system")
            return str(source["metadata"].get("annotations", {}).get("reconcile.fluxcd.io/requestedAt", ""))

        before = requested_at()  # the push's own request, if any
        tray.open_menu_item("Down", "Down", "Down", "Down", "Return")
        line = tray.running.expect_stderr("requested a reconcile of")
        assert "GitRepository/flux-system, Kustomization/" in line
        assert requested_at() not in ("", before)

        # Pause notifications ▸ For 1 hour: five items down, then into the submenu (its first enabled item).
        tray.open_menu_item("Down", "Down", "Down", "Down", "Down", "Right", "Return")
        tray.running.expect_stderr("notifications paused until")
        tray.wait_state(TrayState.PAUSED)
        again = fleet.commit_and_push(edit("apps/web.yaml", "replicas: 3", "replicas: 4"), "scale web again")
        tray.running.expect(lambda _n, line: f"main@{again[:7]} succeeded" in line, "the second push deployed")
        assert tray.icon_state() is TrayState.PAUSED
        assert len(notify_calls(monitor)) == 1  # still only the first push's

        # Report…: up from the top, past Quit. The page of the history (both pushes) is written, then opened.
        tray.open_menu_item("Up", "Up", "Return")
        written = Path(tray.running.expect_stderr("report written to").split("report written to ", 1)[1].strip())
        page = written.read_text(encoding="utf-8")
        assert '<div class="value">2</div><div class="label">pushes</div>' in page
        assert "<svg" in page
        assert tray.stop() == 0


@ONLY_THE_SIMULATOR
def test_no_notification_server_is_said_once_and_quit_is_clean(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    tray = start_tray()
    fleet.commit_and_push(BROKEN_YAML, "break web")
    tray.wait_state(TrayState.FAILED)
    tray.running.expect_stderr("no notification server")
    assert tray.stop() == 0
    stderr = "\n".join(tray.running.stderr)
    assert stderr.count("carrying on without notifications") == 1
    assert "Traceback" not in stderr  # pystray's GLib.Error on exit is worked around
    assert "tray stopped" in stderr


@ONLY_THE_SIMULATOR
def test_a_missing_kubeconfig_shows_as_unreachable_and_loses_no_push(
    fleet: Fleet, start_tray: StartTray, tmp_path: Path
) -> None:
    tray = start_tray(kubeconfig=tmp_path / "nowhere", state=TrayState.UNREACHABLE)
    line = tray.running.expect_stderr("icon: unreachable")
    assert f"no kubeconfig at {tmp_path / 'nowhere'}" in line  # the tooltip says why
    before = children()
    fleet.commit_and_push(SCALE_WEB, "scale web")
    assert not wait_for_children(timeout=30, ignore=before)  # the hook's confirmer has spooled the push (pidfd)
    spool = Path(fleet.env["FLUXMON_SPOOL_DIR"])
    assert tray.stop(signal.SIGINT) == 0  # Ctrl-C in the terminal it was started from: the same orderly stop
    assert "fluxmon: tray stopped" in tray.running.stderr
    assert len(list(spool.glob("*.json"))) == 1  # still there for the next start: nothing is lost


@ONLY_THE_SIMULATOR
def test_a_lost_cluster_shows_as_unreachable_until_it_is_back(fleet: Fleet, start_tray: StartTray) -> None:
    assert fleet.cluster.sim is not None
    tray = start_tray()
    fleet.cluster.sim.stop()
    tray.wait_state(TrayState.UNREACHABLE)
    line = tray.running.expect_stderr("icon: unreachable")
    assert "cluster: " in line  # the tooltip says what is wrong
    fleet.cluster.sim.start()
    tray.wait_state(TrayState.IDLE)
    assert tray.stop() == 0


@ONLY_THE_SIMULATOR
def test_a_hostile_spool_file_is_named_and_the_next_push_is_followed(fleet: Fleet, start_tray: StartTray) -> None:
    tray = start_tray()
    spool = Path(fleet.env["FLUXMON_SPOOL_DIR"])
    (spool / "20260101T000000Z-1-evil.json").write_bytes(b'{"schema": "fluxmon.session/v1", "id": "<b>\x00')
    line = tray.running.expect_stderr("ignored spool file")
    assert "20260101T000000Z-1-evil.json" in line
    fleet.commit_and_push(SCALE_WEB, "scale web")
    tray.wait_state(TrayState.DEPLOYED)
    assert tray.stop() == 0


@ONLY_THE_SIMULATOR
def test_a_second_tray_says_one_is_running(desktop: Desktop, fleet: Fleet, start_tray: StartTray) -> None:
    tray = start_tray()
    second = subprocess.run(
        [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(fleet.cluster.kubeconfig)],
        env=tray.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2
    assert "fluxmon is already running" in second.stderr
    assert f"(pid {tray.running.process.pid}," in second.stderr
    assert "tray started" not in second.stderr  # said before any window or icon appeared
    assert tray.stop() == 0


def test_without_a_display_the_tray_says_so_and_offers_watch(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLUXMON_SPOOL_DIR": str(tmp_path / "spool")}
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "tray"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "no display" in result.stderr
    assert "fluxmon watch" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_runs_the_tray_through_three_pushes_and_leaves_nothing(desktop: Desktop, tmp_path: Path) -> None:
    env = {
        **isolated_env(tmp_path),
        **desktop.env,
        "TMPDIR": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "FLUXMON_LOG": "INFO",
        "PYSTRAY_BACKEND": "gtk",
    }
    (tmp_path / "run").mkdir(mode=0o700)
    with desktop.notification_daemon() as dunst, desktop.bus_monitor() as monitor:
        demo = Running([sys.executable, "-m", "fluxmon", "demo", "--fast"], env=env)
        demo.expect(lambda name, line: "demo finished: 3 of 3 pushes ended as expected" in line, "the demo's end")
        demo.expect(lambda name, line: "the tray stays" in line, "the tray staying up")
        assert "fluxmon: tray started (gtk backend)" in demo.stderr
        assert any(line.startswith("fluxmon: details window opened") for line in demo.stderr)  # on the failure
        failures = [call for call in notify_calls(monitor) if "byte 2" in call]
        assert len(failures) == 1
        assert "✗ apps failed on production — main@" in failures[0]  # the demo's two clusters: one broke
        assert any("✔ fleet deployed to staging, production — main@" in call for call in notify_calls(monitor))
        wait_until(lambda: dunst.displayed() >= 1, "the demo's notifications")
        demo.process.send_signal(signal.SIGTERM)
        assert demo.finish(timeout=60) == 0
    assert "fluxmon: tray stopped" in demo.stderr
    assert not [line for line in demo.stderr if "still running" in line]
    assert not list(tmp_path.glob("fluxmon-demo-*")), "the demo left its temporary folder behind"
    assert "Traceback" not in "\n".join(demo.stderr)


def test_the_icon_sets_its_tooltip_and_keeps_its_files_private(desktop: Desktop, tmp_path: Path) -> None:
    """Two pystray workarounds: the gtk backend's missing hover tooltip, and its icon files in /tmp."""
    env = {**os.environ, **desktop.env, "TMPDIR": str(tmp_path / "tmp"), "PYSTRAY_BACKEND": "gtk"}
    (tmp_path / "tmp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tests.icon_probe", str(tmp_path / "icons")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["tooltip"] == "Flux Push Monitor: failed"
    assert len(seen["files"]) == 1  # each older image's file went when the next one came
    assert seen["left_after_stop"] is False
    assert not any((tmp_path / "tmp").iterdir())


@ONLY_THE_SIMULATOR
@SLOW_ENOUGH_TO_SEE
def test_on_a_status_notifier_host_the_tray_is_an_appindicator_item_with_a_working_menu(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    """Modern desktops host StatusNotifierItems: with a watcher on the bus the tray chooses appindicator."""
    watcher = StatusNotifierWatcher(desktop.bus_address)
    watcher.start()
    try:
        tray = start_tray(backend="", state=None)
        assert "fluxmon: tray started (appindicator backend)" in tray.running.stderr
        watcher.wait_for_item()
        wait_until(lambda: watcher.item_property("Title") == "Flux Push Monitor: idle", "the idle title")
        sha = fleet.commit_and_push(BROKEN_YAML, "break web")
        wait_until(lambda: watcher.item_property("Title").startswith("Flux Push Monitor: failed"), "a failed title")
        icon = Path(watcher.item_property("IconName"))
        assert icon.parent == tray.runtime / "fluxmon" / "icons"  # private, not /tmp
        with Image.open(icon) as image:
            assert image.convert("RGB").getpixel((32, 12)) == STATE_COLOURS[TrayState.FAILED]
        menu = [re.sub(r"\(\d+s\)", "(…)", line) for line in labels(watcher.menu())]
        assert menu[:4] == [
            f"✗ main@{sha[:7]} failed: Kustomization/apps BuildFailed (…)",
            "Show details…",
            "Recent sessions",
            f"  ✗ main@{sha[:7]} failed: Kustomization/apps BuildFailed (…)",
        ]
        assert menu[-1] == "Quit"
        watcher.click("Show details…")
        wait_until(lambda: desktop.find_window(name=_details_title(sha)), "the details window from the item's menu")
        watcher.click("Quit")
        assert tray.running.finish(timeout=30) == 0
    finally:
        watcher.stop()
    assert "Traceback" not in "\n".join(tray.running.stderr)
