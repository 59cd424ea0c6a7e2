"""Desktop notifications behind one small interface: `start()`, `send(notification)`, `stop()`.

- `DbusNotifier` (Linux, the default): desktop-notifier over D-Bus, which can do what plyer cannot: a
  "View details" button and a click on the notification open the details window (`on_details`). It needs a running
  asyncio loop, so it owns one on a named thread; `send()` only schedules, so the UI thread never waits on the bus.
- `PlyerNotifier`: the design card's portable path (macOS, Windows, or `FLUXMON_NOTIFIER=plyer`), without actions.

What to send is decided in core.overview; these only deliver, and say so through `on_delivered` (the tray then
records the outcome as told; one that never went out is told at the next start). No bus or no notification server
is logged once and then ignored: notifications are a courtesy, the icon and the menu still tell the story.

A notification that `closes` earlier sessions (a fix deploying after failures) takes their sticky critical
notifications off the screen once it is shown, where the server can (D-Bus CloseNotification).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from fluxmon.core.overview import Notification, Urgency
from fluxmon.core.text import display_line, display_text

log = logging.getLogger("fluxmon.notify")

SUCCESS_TIMEOUT_SECONDS = 10
"""Good news goes away by itself; a failure stays until dismissed (the server's default for critical)."""
SEND_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
SENT_KEPT = 100
"""Only the newest this many notifications stay in `sent`: a tray runs for weeks."""
SHOWN_KEPT = 50
"""Critical notifications remembered (to close them once fixed); the oldest is forgotten beyond this many."""

Delivered = Callable[[Notification], None]


def _nothing(_notification: Notification) -> None:
    """The default `on_delivered`: nobody is waiting to hear."""


class Notifier(Protocol):
    def start(self) -> None: ...
    def send(self, notification: Notification) -> None: ...
    def stop(self) -> None: ...


class _OnceLog:
    """Logs a delivery problem the first time only, and again after a success (so a server coming back shows)."""

    def __init__(self) -> None:
        self.failing = False

    def failed(self, text: str, *args: object) -> None:
        if not self.failing:
            log.warning(text + "; carrying on without notifications", *args)
        self.failing = True

    def delivered(self) -> None:
        self.failing = False


def _record(sent: list[Notification], notification: Notification) -> None:
    sent.append(notification)
    del sent[:-SENT_KEPT]


class DbusNotifier:
    def __init__(
        self, *, on_details: Callable[[str], None], on_delivered: Delivered = _nothing, icon: Path | None = None
    ) -> None:
        self._on_details = on_details
        self._on_delivered = on_delivered
        self._icon = icon
        self._shown: dict[str, str] = {}
        """Session id -> desktop-notifier's identifier, for each critical notification still on screen."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notifier: Any = None
        self._pending: list[concurrent.futures.Future[None]] = []
        self._one_at_a_time: asyncio.Lock | None = None
        self._problems = _OnceLog()
        self.sent: list[Notification] = []
        """What the server accepted, in order (the tray's benchmarks and tests read it)."""

    def start(self) -> None:
        from desktop_notifier import DesktopNotifier, Icon

        # desktop-notifier logs every failed send with a traceback; we say it once, in words (_OnceLog).
        logging.getLogger("desktop_notifier").setLevel(logging.CRITICAL)
        self._loop = asyncio.new_event_loop()
        self._notifier = DesktopNotifier(
            app_name="Flux Push Monitor", app_icon=Icon(path=self._icon) if self._icon else None
        )
        self._thread = threading.Thread(target=self._loop.run_forever, name="fluxmon-notify", daemon=True)
        self._thread.start()

    def send(self, notification: Notification) -> None:
        if self._loop is None:
            return
        self._pending = [future for future in self._pending if not future.done()]
        self._pending.append(asyncio.run_coroutine_threadsafe(self._send(notification), self._loop))

    def stop(self) -> None:
        """Let what was sent get its answer, close the bus, then end the loop and its thread."""
        if self._loop is None or self._thread is None:
            return
        concurrent.futures.wait(self._pending, timeout=SEND_TIMEOUT_SECONDS)
        try:
            asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(STOP_TIMEOUT_SECONDS)
        except Exception:  # a bus that is gone needs no goodbye
            log.debug("closing the notification bus failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_SECONDS)
        self._loop.close()
        self._loop = self._thread = None

    async def _send(self, notification: Notification) -> None:
        # One at a time: a failed send leaves a connection behind that must be closed before the next one.
        self._one_at_a_time = self._one_at_a_time or asyncio.Lock()
        async with self._one_at_a_time:
            if not await self._deliver(notification):
                await self._disconnect()  # desktop-notifier connects afresh on the next send
                return
            self._problems.delivered()
            _record(self.sent, notification)
            try:
                self._on_delivered(notification)
            except Exception:
                log.exception("recording a delivered notification failed")
            for session_id in notification.closes:
                await self._close(session_id)

    async def _close(self, session_id: str) -> None:
        identifier = self._shown.pop(session_id, None)
        if identifier is None:
            return  # dismissed already, or shown before a restart
        try:
            await asyncio.wait_for(self._notifier.clear(identifier), SEND_TIMEOUT_SECONDS)
        except Exception as exc:  # the server may have closed it itself; nothing is lost either way
            log.debug("could not close the notification of %s: %s", session_id, exc)

    async def _deliver(self, notification: Notification) -> bool:
        from desktop_notifier import Button
        from desktop_notifier import Urgency as NativeUrgency

        dispatched = asyncio.Event()
        session_id = notification.session_id
        critical = notification.urgency is Urgency.CRITICAL
        try:
            identifier = await asyncio.wait_for(
                self._notifier.send(
                    title=display_line(notification.title),  # the cluster's and git's text: no raw controls
                    message=display_text(notification.body),
                    urgency=NativeUrgency.Critical if critical else NativeUrgency.Normal,
                    buttons=[Button(title="View details", on_pressed=lambda: self._on_details(session_id))],
                    on_clicked=lambda: self._on_details(session_id),
                    on_dismissed=lambda: self._shown.pop(session_id, None),
                    on_dispatched=dispatched.set,
                    timeout=-1 if critical else SUCCESS_TIMEOUT_SECONDS,
                ),
                SEND_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # any failure of the bus is the same to the user
            self._problems.failed("could not send a desktop notification (%s)", exc)
            return False
        if not dispatched.is_set():  # desktop-notifier logs and swallows its own failures
            self._problems.failed("no notification server answered on the D-Bus session bus")
            return False
        if critical:
            self._shown[session_id] = identifier
            while len(self._shown) > SHOWN_KEPT:
                del self._shown[next(iter(self._shown))]
        return True

    async def _disconnect(self) -> None:
        # desktop-notifier 6.2 keeps its dbus-fast connection on the backend and never closes it.
        backend = getattr(self._notifier, "_backend", None)
        bus = getattr(backend, "bus", None)
        if bus is not None and bus.connected:
            bus.disconnect()
            await bus.wait_for_disconnect()
        if backend is not None:
            backend.interface = None


class PlyerNotifier:
    """plyer's notification facade: portable, but no actions, and (on Linux) no urgency."""

    def __init__(self, *, on_delivered: Delivered = _nothing) -> None:
        self._on_delivered = on_delivered
        self._problems = _OnceLog()
        self.sent: list[Notification] = []

    def start(self) -> None:
        """Nothing to start: plyer reaches its platform anew for each notification."""

    def send(self, notification: Notification) -> None:
        from plyer import notification as facade

        try:
            with warnings.catch_warnings():
                # plyer warns on every call on Linux when dbus-python is missing, then uses notify-send.
                warnings.simplefilter("ignore")
                facade.notify(
                    title=display_line(notification.title),
                    message=display_text(notification.body),
                    app_name="Flux Push Monitor",
                    timeout=SUCCESS_TIMEOUT_SECONDS,
                )
        except Exception as exc:  # plyer raises whatever its platform raises
            self._problems.failed("could not send a desktop notification through plyer (%s)", exc)
            return
        self._problems.delivered()
        _record(self.sent, notification)
        self._on_delivered(notification)

    def stop(self) -> None:
        """Nothing to stop: no connection outlives a notification."""


class NoNotifier:
    """`FLUXMON_NOTIFIER=none`: the icon and menu only."""

    sent: list[Notification] = []  # noqa: RUF012 - always empty

    def __init__(self, *, on_delivered: Delivered = _nothing) -> None:
        self._on_delivered = on_delivered

    def start(self) -> None:
        """Nothing to start."""

    def send(self, notification: Notification) -> None:
        """Dropped on purpose (the user turned notifications off), which counts as told."""
        self._on_delivered(notification)

    def stop(self) -> None:
        """Nothing to stop."""


NOTIFIER_KINDS = ("dbus", "plyer", "none")
"""What the composition root may ask for ("" chooses: D-Bus on Linux when desktop-notifier is installed)."""


def make_notifier(
    wanted: str = "",
    *,
    on_details: Callable[[str], None],
    on_delivered: Delivered = _nothing,
    icon: Path | None = None,
) -> Notifier:
    """The notifier of kind `wanted` (one of NOTIFIER_KINDS, or "" to choose); the caller decides which."""
    if wanted == "none":
        return NoNotifier(on_delivered=on_delivered)
    if wanted == "plyer":
        return PlyerNotifier(on_delivered=on_delivered)
    if wanted == "dbus" or sys.platform.startswith("linux"):
        try:
            import desktop_notifier  # noqa: F401
        except ImportError:
            log.info("desktop-notifier is not installed: notifications go through plyer, without actions")
            return PlyerNotifier(on_delivered=on_delivered)
        return DbusNotifier(on_details=on_details, on_delivered=on_delivered, icon=icon)
    return PlyerNotifier(on_delivered=on_delivered)
