"""The tray icon: pystray on its own thread, with our artwork and a menu built from tray.menu entries.

Backend, chosen on purpose (DESIGN §8): `appindicator` (StatusNotifierItem, the modern desktops' tray) when its
typelib is installed, else `gtk` (XEmbed, a menu on right click and "Show details…" on left click). The `xorg`
backend has no menu and three known bugs, so it is refused with a message saying what to install. Both usable
backends need PyGObject (the `gtk` extra, `pip install '.[gtk]'`) plus Debian's `gir1.2-gtk-3.0`.

Three pystray 0.19.5 behaviours are worked around here, and tests prove them:
- Its GTK backends write each icon image to a fresh `tempfile.mktemp()` in /tmp, which a crash leaves behind. We
  write them into a private folder of our own, emptied at start and at stop.
- `icon.run()` raises GLib.Error (ServiceUnknown) on exit when no notification server is on the bus, because it
  hides a pystray notification we never showed. We finalise without that call.
- Its gtk backend never sets the hover tooltip (only the accessible title); we set both.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import itertools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from fluxmon.core.errors import FluxmonError
from fluxmon.core.marks import TrayState
from fluxmon.tray.menu import SEPARATOR, Action, Entry

log = logging.getLogger("fluxmon.tray")

ICON_SIZE_PX = 64
"""The image handed to the tray host, which scales it to its panel; the 16-48 px renders are for other uses."""
STOP_TIMEOUT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 10.0
SUPPORTED_BACKENDS = ("appindicator", "gtk")


class TrayUnavailable(FluxmonError):
    """No tray can be shown here: no display, or no backend with a menu."""

    title = "no tray"


@functools.cache
def icon_image(state: TrayState, size: int = ICON_SIZE_PX) -> Image.Image:
    """The artwork for a state, from the package's assets (never from the current directory)."""
    resource = importlib.resources.files("fluxmon.assets").joinpath("icons", f"{state.value}-{size}.png")
    with resource.open("rb") as handle:
        image = Image.open(handle)
        image.load()
    return image


def choose_backend(environ: Mapping[str, str] = os.environ) -> str:
    """The pystray backend to use, or TrayUnavailable saying what is missing. Imports nothing of pystray."""
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        raise TrayUnavailable(
            "no display (DISPLAY is not set): the tray needs a desktop session. "
            "In a terminal, `fluxmon watch` follows a push instead."
        )
    wanted = environ.get("PYSTRAY_BACKEND", "")
    if wanted and wanted not in SUPPORTED_BACKENDS:
        raise TrayUnavailable(
            f"PYSTRAY_BACKEND={wanted} is not supported: fluxmon needs a menu, which only "
            f"{' and '.join(SUPPORTED_BACKENDS)} offer"
        )
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError) as exc:
        raise TrayUnavailable(
            "the tray needs PyGObject and GTK 3: install fluxmon with its gtk extra (pip install '.[gtk]') "
            "(which builds with libgirepository1.0-dev libcairo2-dev pkg-config) and apt install gir1.2-gtk-3.0"
        ) from exc
    if wanted:
        return wanted
    try:
        gi.require_version("AyatanaAppIndicator3", "0.1")
    except ValueError:
        return "gtk"
    return "appindicator"


@contextlib.contextmanager
def _without_opengl() -> Iterator[None]:
    """GTK initialised (on `import pystray`) without OpenGL, unless the user asked for a GDK_GL mode.

    The first GTK 3 program on an X display probes GLX to choose its visuals (later ones read the choice from the
    root window's GDK_VISUALS property), which loads the GL driver into it for good: with Mesa rendering in
    software (Xvfb, virtual machines) that is llvmpipe, 47 MiB of libLLVM. A tray autostarted at login, or on a
    desktop with no other GTK 3 program (a bare window manager), is that first program, for an icon and a menu that
    never draw with GL. `GDK_GL=disable` skips the probe. GTK reads the variable once, at init; it is taken out
    again afterwards, so that the programs the tray starts (xdg-open, a browser) do not inherit it.
    """
    if "GDK_GL" in os.environ:
        yield
        return
    os.environ["GDK_GL"] = "disable"
    try:
        yield
    finally:
        os.environ.pop("GDK_GL", None)


def _icon_class(backend: str, icon_dir: Path) -> type[Any]:
    """pystray's Icon for `backend`, with the workarounds described in the module docstring."""
    os.environ["PYSTRAY_BACKEND"] = backend  # pystray reads it once, at import
    try:
        with _without_opengl():
            import pystray
    except Exception as exc:  # Xlib.error.DisplayNameError and GTK init failures are not ImportErrors
        raise TrayUnavailable(f"cannot start the {backend} tray: {exc}") from exc

    class PrivateFilesIcon(pystray.Icon):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._set_tooltip()

        def _update_title(self) -> None:
            super()._update_title()
            self._set_tooltip()

        def _set_tooltip(self) -> None:
            status_icon = getattr(self, "_status_icon", None)
            if status_icon is not None:
                # pystray's gtk backend only sets the accessible title: the hover tooltip stays empty.
                from gi.repository import GLib

                GLib.idle_add(lambda: status_icon.set_tooltip_text(self.title) and False)

        def _update_fs_icon(self) -> None:
            self._icon_path = str(icon_dir / f"icon-{next(_counter)}.png")
            with open(self._icon_path, "wb") as handle:  # noqa: PTH123 - pystray's own attribute is a str
                self.icon.save(handle, "PNG")
            self._icon_valid = True

        def _finalize(self) -> None:
            self._remove_fs_icon()
            if hasattr(self, "_appindicator"):
                del self._appindicator  # unreferenced, it leaves the StatusNotifierWatcher

    return PrivateFilesIcon


_counter = itertools.count(1)


class TrayIcon:
    """`start()` shows the icon from its own thread; `show()` changes it; `stop()` removes it and its files."""

    def __init__(self, *, backend: str, on_action: Callable[[Action], None], icon_dir: Path) -> None:
        self.backend = backend
        self._on_action = on_action
        self._icon_dir = icon_dir
        self._icon: Any = None
        self._state: TrayState | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, *, state: TrayState, tooltip: str, menu: Sequence[Entry]) -> None:
        shutil.rmtree(self._icon_dir, ignore_errors=True)  # what a crash left behind
        self._icon_dir.mkdir(parents=True, mode=0o700)
        icon_class = _icon_class(self.backend, self._icon_dir)
        self._icon = icon_class("fluxmon", icon_image(state), tooltip, menu=self._pystray_menu(menu))
        self._state = state
        self._thread = threading.Thread(target=self._run, name="fluxmon-tray-icon", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_SECONDS):
            log.warning("the tray icon did not become visible within %.0fs", READY_TIMEOUT_SECONDS)

    def show(self, *, state: TrayState, tooltip: str, menu: Sequence[Entry] | None = None) -> None:
        """Change the icon; pystray hands each change to its own loop, so any thread may call this."""
        if self._icon is None:
            return
        if state is not self._state:  # each new image is a file write and a reload in the tray host
            self._icon.icon = icon_image(state)
            self._state = state
        self._icon.title = tooltip
        if menu is not None:
            self._icon.menu = self._pystray_menu(menu)

    def stop(self) -> None:
        if self._icon is not None:
            self._icon.stop()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                log.error("the tray icon's thread did not stop")
            self._thread = None
        shutil.rmtree(self._icon_dir, ignore_errors=True)

    def _run(self) -> None:
        def setup(icon: Any) -> None:
            icon.visible = True
            self._ready.set()

        try:
            self._icon.run(setup=setup)
        except Exception:  # the thread's error boundary: said, and the app quits normally from its menu or a signal
            log.exception("the tray icon's loop failed")

    def _pystray_menu(self, entries: Sequence[Entry]) -> Any:
        import pystray

        def item(entry: Entry) -> Any:
            if entry is SEPARATOR:
                return pystray.Menu.SEPARATOR
            if entry.submenu:
                return pystray.MenuItem(entry.text, pystray.Menu(*(item(e) for e in entry.submenu)))
            action = entry.action
            return pystray.MenuItem(
                entry.text,
                (lambda: self._on_action(action)) if action else None,
                enabled=entry.enabled and action is not None,
                default=entry.default,
            )

        return pystray.Menu(*(item(e) for e in entries))
