"""A real headless desktop for the tray tests (DESIGN §8): Xvfb, a private D-Bus session bus, trayer, and dunst.

Every process is started here, waited on by event (a display number on a pipe, a bus address on a pipe, a window
or a bus name appearing), and stopped by PID. The bus config has no service directories, so D-Bus activation can
never start a second, unconfigured notification daemon, and no `dbus-x11` autolaunch can leave buses behind.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageGrab

from harness.running import Running

START_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.05
"""X and D-Bus state offers no change events to a shell tool; checks repeat this often until a deadline."""

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={directory}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

DUNST_CONFIG = """[global]
    follow = none
    geometry = "400x5-10+40"
    width = 400
    origin = top-right
    offset = 10x40
    idle_threshold = 0
    markup = full
    format = "<b>%s</b>\\n%b"
    show_indicators = no
    sticky_history = yes
    history_length = 50
    dmenu = {dmenu}
    browser = /bin/false
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""

REQUIRED_PROGRAMS = ("Xvfb", "dbus-daemon", "dbus-monitor", "dunst", "dunstctl", "trayer", "xdotool", "xwininfo")


def missing_programs() -> list[str]:
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        return [*missing, "PyGObject with GTK 3"]
    try:
        gi.require_version("AyatanaAppIndicator3", "0.1")
    except ValueError:
        missing.append("gir1.2-ayatanaappindicator3-0.1")
    return missing


def _require_desktop_programs() -> None:
    """Skip where the programs are missing, unless FLUXMON_REQUIRE_DESKTOP is set (CI), where that fails."""
    missing = missing_programs()
    if missing:
        message = f"the desktop tests need {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("FLUXMON_REQUIRE_DESKTOP"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """A desktop per test module, for programs that run in processes of their own (the tray, dunst)."""
    _require_desktop_programs()
    desktop = Desktop(tmp_path_factory.mktemp("desktop"))
    try:
        desktop.start()
        yield desktop
    finally:
        desktop.stop()  # also when it could not start: its Xvfb must not outlive the tests


@pytest.fixture(scope="session")
def tk_display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The one display of every Tk window opened in the pytest process itself.

    Tk keeps each display's connection open until the process ends, even after its last window is destroyed, so a
    display stopped under it (a module's desktop) later ends the whole pytest process through Xlib's I/O error
    handler. This one outlives every test.
    """
    _require_desktop_programs()
    display = Desktop(tmp_path_factory.mktemp("tk-display"))
    try:
        display.start_display()
        yield display.display
    finally:
        display.stop()


@pytest.fixture
def root(tk_display: str) -> Iterator[Any]:
    """A hidden Tk root on the session's Tk display, for tests of the tray's windows (skipped without Tk)."""
    tk = pytest.importorskip("tkinter", reason="this Python was built without Tk (Debian: python3-tk, or tk-dev)")
    root = tk.Tk(screenName=tk_display)
    root.withdraw()
    yield root
    root.destroy()
    # Tk objects must die on this thread: left to the cyclic GC, they may be collected on any thread (a
    # simulator's, later), and Tcl aborts the process when an interpreter is deleted off its own thread.
    del root
    gc.collect()


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = START_TIMEOUT_SECONDS, *, raising: bool = True
) -> Any:
    """Repeat a check of X or D-Bus state until it holds; the value it returned, or AssertionError with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if not raising:
                return value
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_SECONDS)


@dataclass
class Desktop:
    """Xvfb, a private session bus and trayer; dunst is started per test with `notification_daemon()`."""

    directory: Path
    display: str = ""
    bus_address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.start_display()
        config = self.directory / "session.conf"
        bus_dir = self.directory / "bus"
        bus_dir.mkdir(exist_ok=True)
        config.write_text(BUS_CONFIG.format(directory=bus_dir), encoding="utf-8")
        self.bus_address = self._read_line(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address={fd}"]
        )
        self._spawn(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "120",
             "--heighttype", "pixel", "--height", "32", "--transparent", "false", "--tint", "0x303030"]
        )  # fmt: skip
        self.trayer_window = wait_until(lambda: self.find_window(class_name="trayer"), "trayer's window")

    def start_display(self) -> None:
        """Xvfb alone: enough for a program that needs a display but no tray host or bus of this desktop's."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.display = (
            f":{self._read_line(['Xvfb', '-displayfd', '{fd}', '-screen', '0', '1366x768x24', '-nolisten', 'tcp'])}"
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()

    @property
    def env(self) -> dict[str, str]:
        """The environment of a program on this desktop: no real display, bus or home leaks in."""
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")}
        env.update(DISPLAY=self.display, DBUS_SESSION_BUS_ADDRESS=self.bus_address, NO_AT_BRIDGE="1")
        return env

    # --- processes -------------------------------------------------------------------------------------------

    def _spawn(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, env=self.env if self.display else None, **kwargs)
        self.processes.append(process)
        return process

    def _read_line(self, args: list[str]) -> str:
        """Start a program that reports readiness by writing one line to a file descriptor, and read that line."""
        read_end, write_end = os.pipe()
        try:
            self._spawn([a.replace("{fd}", str(write_end)) for a in args], pass_fds=(write_end,))
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            line = pipe.readline().decode().strip()  # the whole line: closing early would kill the writer
        if not line:
            raise RuntimeError(f"{args[0]} did not start")
        return line

    @contextlib.contextmanager
    def notification_daemon(self) -> Iterator[Dunst]:
        """dunst with a known config; stopped (and its history gone) when the block ends."""
        config = self.directory / "dunstrc"
        # dunst offers a notification's actions through dmenu; this one picks the "View details" button.
        picker = self.directory / "pick-view-details"
        picker.write_text("#!/bin/sh\ngrep -m1 'View details'\n", encoding="utf-8")
        picker.chmod(0o700)
        config.write_text(DUNST_CONFIG.format(dmenu=picker), encoding="utf-8")
        process = subprocess.Popen(["dunst", "-config", str(config)], env=self.env, stderr=subprocess.DEVNULL)
        dunst = Dunst(self.env)
        try:
            wait_until(dunst.running, "dunst on the session bus")
            yield dunst
        finally:
            process.terminate()
            process.wait(10)

    @contextlib.contextmanager
    def bus_monitor(self) -> Iterator[Running]:
        """dbus-monitor on the Notifications interface, ready (it has joined the bus) when the block starts."""
        monitor = Running(["dbus-monitor", "--session", "interface='org.freedesktop.Notifications'"], env=self.env)
        try:
            monitor.expect(lambda _name, line: "NameAcquired" in line or "NameLost" in line, "dbus-monitor ready")
            yield monitor
        finally:
            monitor.process.terminate()
            monitor.finish()

    # --- X --------------------------------------------------------------------------------------------------

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return result.stdout.strip()

    def find_window(self, *, name: str = "", class_name: str = "") -> int | None:
        args = ["search", "--onlyvisible", "--name" if name else "--class", name or class_name]
        found = self.xdotool(*args).split()
        return int(found[0]) if found else None

    def children(self, window: int) -> list[tuple[int, int, int]]:
        """(id, width, height) of every window below `window`, from `xwininfo -tree`."""
        out = subprocess.run(
            ["xwininfo", "-tree", "-id", str(window)], env=self.env, capture_output=True, text=True, timeout=30
        ).stdout
        found = []
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0].startswith("0x") and "x" in line:
                size = next((p for p in parts if "x" in p and "+" in p and p[0].isdigit()), "")
                if size:
                    width, _, rest = size.partition("x")
                    found.append((int(parts[0], 16), int(width), int(rest.split("+")[0])))
        return found

    def geometry(self, window: int) -> tuple[int, int, int, int]:
        """x, y, width, height of a window on the screen."""
        values = dict(
            line.split("=", 1) for line in self.xdotool("getwindowgeometry", "--shell", str(window)).splitlines()
        )
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def grab(self, box: tuple[int, int, int, int] | None = None) -> Image.Image:
        """A screenshot of the whole screen, or of (x, y, width, height)."""
        image = ImageGrab.grab(xdisplay=self.display)
        if box is None:
            return image
        x, y, width, height = box
        return image.crop((x, y, x + width, y + height))

    def close_window(self, name: str) -> None:
        """Ask the window to close (WM_DELETE_WINDOW), as a window manager would, until it has gone.

        Tk now and then drops a WM_DELETE_WINDOW that arrives just after its window was mapped (seen about once
        in five runs under Xvfb with no window manager); a user would click the close button again, and so do we.
        """
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while (window := self.find_window(name=name)) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the window {name!r} did not close")
            self._send_delete(window)
            wait_until(lambda: self.find_window(name=name) is None, "", timeout=1.0, raising=False)

    def _send_delete(self, window: int) -> None:
        from Xlib import X, display, error, protocol

        connection = display.Display(self.display)
        try:
            target = connection.create_resource_object("window", window)
            protocols, delete = connection.intern_atom("WM_PROTOCOLS"), connection.intern_atom("WM_DELETE_WINDOW")
            event = protocol.event.ClientMessage(
                window=target, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
            )
            target.send_event(event, onerror=error.CatchError())  # gone already: nothing to close
            connection.flush()
        finally:
            connection.close()


class Dunst:
    """What dunst shows and keeps, through `dunstctl` on the same bus."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def _ctl(self, *args: str) -> str:
        result = subprocess.run(["dunstctl", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return result.stdout.strip() if result.returncode == 0 else ""

    def running(self) -> bool:
        return self._ctl("is-paused") in ("true", "false")

    def displayed(self) -> int:
        return int(self._ctl("count", "displayed") or 0)

    def default_action(self) -> None:
        """What a click on the notification does."""
        self._ctl("action", "0")

    def view_details(self) -> None:
        """Open the notification's action menu and choose its "View details" button."""
        self._ctl("context")

    def close_all(self) -> None:
        self._ctl("close-all")

    def history(self) -> list[dict[str, Any]]:
        """Every notification dunst has closed, newest first, as {summary, body, urgency, appname}."""
        data = json.loads(self._ctl("history") or '{"data": [[]]}')
        return [{key: entry[key]["data"] for key in entry} for entry in data["data"][0]]
