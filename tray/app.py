"""`fluxmon tray`: the composition root of the desktop app.

Threads (DESIGN §8, the layout that works with every pystray backend):
    main            Tk's mainloop: owns all app state, the details windows, and every decision about the icon
    fluxmon-tray-icon   pystray's GLib loop; menu clicks only post an Action
    fluxmon-notify  desktop-notifier's asyncio loop; "View details" only posts
    fluxmon-sessions, fluxmon-spool-reader, the cluster watches: the engine (core/), which only posts snapshots
Everything crosses to the main thread through one queue. A self-pipe wakes Tk the moment something is posted
(no polling), and signal.set_wakeup_fd points SIGINT and SIGTERM at the same pipe, so a signal stops the app
in order even while Tk sleeps in C.

Shutdown order: producers (spool reader, sessions and their cluster watches), then the snapshots they left in the
queue (so a session that ended as the tray stops is still told), then the notifier (which waits for its sends),
then the UI (details windows, icon, Tk). Active sessions stay in the store and resume on the next start.

When the X server goes away (the session ended, Xvfb killed), Xlib calls its fatal IO error handler, which must
not return; Tk's and GTK's would exit 1 in silence. Ours stops the producers (active sessions stay in the store),
says so in one line, and exits 2.

The composition root (fluxmon/commands.py) builds the engine (core/engine.py), and chooses the icon's backend and
the notifier; the tray is given all three (as udiskie's cli.py gives its tray) and builds none of them itself.

The engine follows each push on every configured cluster and hands the tray pushes (core.push): the icon, the
tooltip, the menu and the notifications show the push's outcome across them (naming the clusters when there are
several), the details window has a tab per cluster, and "Reconcile now" asks each cluster for its own objects.

The tray reads the user's config file again whenever it changes (a watchdog observer on its folder says when:
tray/configwatch.py): new settings apply at once (other contexts or kinds restart the engine on them; active
pushes resume), and an invalid file is shown in the tooltip and the menu, with the settings in force left as they
were. A pause is kept in the state folder, so that "until tomorrow" survives a restart.

Idle, the tray does not tick. Each timer is armed for a deadline it knows of, and only while it matters: a pause's
end, the next try of a kubeconfig that could not be loaded, a started program to reap, and, while a cluster is
followed, a look every UNFOLLOWED_CHECK_SECONDS at whether Flux still follows the pushes shown (the engine tells
no event when a source changes while no push is being followed). An open details window of a push still running
redraws its clock every second.

An outcome counts as told only once its notification went out, or was deliberately not sent (paused, or not an
outcome the user asked for); the store keeps the others, and the next start tells them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from fluxmon.core.cluster import ClusterTarget
from fluxmon.core.config import Config, file_stamp, reload_user_config
from fluxmon.core.engine import Engine
from fluxmon.core.errors import FluxmonError
from fluxmon.core.health import ClusterHealth
from fluxmon.core.kubeconfig import resolve_targets
from fluxmon.core.objects import ObjectRef
from fluxmon.core.overview import (
    Notification,
    Overview,
    cluster_problems,
    failures_fixed_by,
    notification_for,
    overview,
    pause_until,
)
from fluxmon.core.paths import runtime_dir, user_config_path
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import Role, SessionSpec, SessionState
from fluxmon.core.store import SessionStore
from fluxmon.core.text import display_line
from fluxmon.tray.configwatch import ConfigWatch
from fluxmon.tray.icon import TrayIcon, TrayUnavailable
from fluxmon.tray.menu import RECENT_SESSIONS, Action, Entry, MenuAction, build_menu, outline
from fluxmon.tray.notify import Delivered, Notifier

log = logging.getLogger("fluxmon.tray")

UNFOLLOWED_CHECK_SECONDS = 10.0
"""While a cluster is followed, whether Flux still follows each push shown is asked this often (in memory: the
engine's cache, no request), besides at once after every change of a cluster's health and every outcome."""
PAUSE_CHECK_MAX_SECONDS = 60.0
"""A pause's end is looked at no later than this after the last look (a clock set back or a suspended machine is
noticed within it), else exactly at its end."""
REAP_SECONDS = 1.0
"""A program the tray started (xdg-open) is looked at this often until it has exited."""
RECONNECT_SECONDS = 30.0
"""A kubeconfig that could not be loaded is tried again this often (the user may be fixing it)."""
STOP_TIMEOUT_SECONDS = 5.0
EXIT_DISPLAY_LOST = 2
"""The tray cannot go on without a display: like any other reason it cannot run (`fluxmon` exits 2 for those)."""
QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CONFIG_TEMPLATE = """# Flux Push Monitor settings (see the README, "Configuration").
# timeout = "5m"
# reconcile = true
# notify_on = ["succeeded", "failed", "timed-out"]
"""


class Message(StrEnum):
    """What crosses to the UI thread (`post`), with its payload's type."""

    SNAPSHOT = "snapshot"  # PushSnapshot
    CONFIG = "config"  # None: something changed where the config file lives
    HEALTH = "health"  # ClusterHealth (of one cluster: it names its context)
    FOLLOW = "follow"  # SessionSpec
    DETAILS = "details"  # a push id
    ACTION = "action"  # a menu Action
    RECONCILED = "reconciled"  # what a reconcile request did, in a line
    REPORTED = "reported"  # the report page written (its path), or why not (a line)
    QUIT = "quit"  # None


class IconFactory(Protocol):
    """Builds the tray's icon once the app can take its clicks (the composition root chose the backend)."""

    def __call__(self, *, on_action: Callable[[Action], None]) -> TrayIcon: ...


class NotifierFactory(Protocol):
    """Builds the notifier once the app can take its callbacks (the composition root chose which)."""

    def __call__(self, *, on_details: Callable[[str], None], on_delivered: Delivered) -> Notifier: ...


class TrayApp:
    """Give it the engine, the icon and the notifier; `run()` on the main thread until Quit or a signal."""

    def __init__(
        self,
        engine: Engine,
        *,
        config: Config,
        icon: IconFactory,
        notifier: NotifierFactory,
        context_given: bool = False,
        kubeconfig: str | None = None,
        observer: Callable[[PushSnapshot], None] | None = None,
    ) -> None:
        """`engine`: stopped, with a store. `context_given`: the contexts came from the command line, so a change
        of the config file's does not move the tray. `kubeconfig`: `--kubeconfig`, where the contexts a changed
        config file names are looked up. `observer` sees every snapshot after the tray has (on the UI thread;
        `fluxmon demo` narrates with it)."""
        if engine.store is None:
            raise ValueError("the tray keeps a history: give its engine a state_dir")
        self.engine = engine
        self.config = config
        self._make_icon = icon
        self._make_notifier = notifier
        self._observer = observer
        self.snapshots: dict[str, PushSnapshot] = {}
        """The pushes the tray knows, by id (the newest snapshot of each)."""
        self.paused_until: datetime | None = None
        self.connect_problem = ""
        """Why the engine could not start (a kubeconfig or context that cannot be loaded; it names the context)."""
        self.healths: dict[str, ClusterHealth] = {}
        """Each followed cluster's health as last told, by context."""
        self.config_problem = "; ".join(config.warnings)
        self.unfollowed: set[str] = set()
        """Pushes on a remote and branch that Flux no longer follows: their outcome no longer counts."""
        self._kubeconfig = kubeconfig
        self._follows_config = not context_given and engine.targets == self._configured_targets(config)
        """The clusters are the config file's (not the command line's, nor the demo's): they change with it."""
        self._config_stamp = file_stamp(user_config_path())
        self._sent: set[tuple[str, str]] = set()
        self._queue: queue.SimpleQueue[tuple[Message, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._wake_read, self._wake_write):
            os.set_blocking(fd, False)
        self._store: SessionStore = engine.store
        self._notifier: Notifier | None = None
        self._icon: TrayIcon | None = None
        self._root: Any = None
        self._windows: dict[str, Any] = {}
        self._menu: tuple[Entry, ...] = ()
        self._workers: list[threading.Thread] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._timers: dict[str, str] = {}
        """Tk's id of each timer armed, by what it is for (see `_arm`)."""
        self._config_watch = ConfigWatch(user_config_path(), on_change=lambda: self.post(Message.CONFIG))
        self.shown: Overview | None = None
        self._display_watch: object = None
        """Keeps the ctypes callback alive for as long as Xlib may call it."""
        self._leaving = threading.Lock()
        engine.subscribe(lambda snapshot: self.post(Message.SNAPSHOT, snapshot))
        engine.subscribe_health(lambda health: self.post(Message.HEALTH, health))

    # --- from any thread ---------------------------------------------------------------------------------------

    def post(self, kind: Message, payload: Any = None) -> None:
        """Hand a message to the UI thread and wake it; the only thing other threads may do to the app."""
        self._queue.put((kind, payload))
        with contextlib.suppress(BlockingIOError):  # a full pipe already holds a wake-up
            os.write(self._wake_write, b"\0")

    def follow(self, spec: SessionSpec) -> None:
        """Follow a push that did not come through the spool (the demo's initial sync)."""
        self.post(Message.FOLLOW, spec)

    def show_details(self, session_id: str) -> None:
        self.post(Message.DETAILS, session_id)

    def quit(self) -> None:
        self.post(Message.QUIT)

    # --- lifecycle (main thread) -------------------------------------------------------------------------------

    def run(self) -> int:
        # One tray per user, said before any window exists (SpoolError names the holder).
        self.engine.take_locks()
        try:
            self._open_display()
            previous = {signum: signal.signal(signum, lambda *_: self.post(Message.QUIT)) for signum in QUIT_SIGNALS}
            previous_wakeup = signal.set_wakeup_fd(self._wake_write)
            try:
                self._start()
                self._root.mainloop()
            finally:
                signal.set_wakeup_fd(previous_wakeup)
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        finally:
            self._shutdown()
        return 0

    def _open_display(self) -> None:
        import tkinter as tk

        try:
            self._root = tk.Tk(className="fluxmon")
        except tk.TclError as exc:
            raise TrayUnavailable(f"cannot open the display: {exc}. `fluxmon watch` works in a terminal") from exc
        self._root.withdraw()
        self._root.tk.createfilehandler(self._wake_read, tk.READABLE, lambda *_: self._drain())

    def _start(self) -> None:
        self.paused_until = self._store.load_pause(datetime.now())
        if self.paused_until is not None:
            log.info("notifications paused until %s", self.paused_until)
            self._arm_pause_end()
        if self.config_problem:
            log.warning("%s", self.config_problem)
        untold = self._store.untold()
        waiting = {snapshot.id for snapshot in untold}
        for snapshot in self._store.recent(RECENT_SESSIONS):
            self.snapshots[snapshot.id] = snapshot
            if snapshot.id not in waiting:
                self._sent.add((snapshot.id, snapshot.state.value))  # told before the restart: never again
        view = self._overview()
        self._menu = self._build_menu(view)
        self._icon = self._make_icon(on_action=lambda action: self.post(Message.ACTION, action))
        self._icon.start(state=view.state, tooltip=view.tooltip, menu=self._menu)
        self.shown = view
        # After Tk and GTK have opened their displays (GDK installs its own handler as it opens one).
        self._display_watch = on_display_lost(self._display_lost)
        log.info("tray started (%s backend)", self._icon.backend)
        log.debug("menu:\n%s", "\n".join(outline(self._menu)))
        self._notifier = self._make_notifier(
            on_details=lambda session_id: self.post(Message.DETAILS, session_id), on_delivered=self._delivered
        )
        self._notifier.start()
        for snapshot in untold:  # ended while no tray could tell (stopped, killed, or no notification server)
            self.snapshots.setdefault(snapshot.id, snapshot)
            self._notify(snapshot)
        self._trim()
        # Watching from here on, then read once more: a change made while the tray started is not missed.
        self._config_watch.start()
        if file_stamp(user_config_path()) != self._config_stamp:
            self.post(Message.CONFIG)
        self._connect()

    def _connect(self) -> None:
        """Start the engine; when it cannot connect, the tray says why and tries again later."""
        try:
            self.engine.start()
        except FluxmonError as error:
            self.connect_problem = display_line(f"{error.title}: {error.message}")
            self._arm("reconnect", RECONNECT_SECONDS, self._reconnect)
            log.warning("%s (trying again every %.0fs)", self.connect_problem, RECONNECT_SECONDS)
            self._refresh()
            return
        self._disarm("reconnect")
        self.connect_problem = ""
        followed = set(self.engine.contexts)
        self.healths = {context: h for context, h in self.healths.items() if context in followed}
        self._check_unfollowed()
        self._refresh()

    def _reconnect(self) -> None:
        if not self.engine.running:
            self._connect()

    def _shutdown(self) -> None:
        log.info("tray stopping")
        self._config_watch.stop()
        self.engine.stop()
        for worker in self._workers:
            worker.join(STOP_TIMEOUT_SECONDS)
        self._drain_snapshots()
        if self._notifier is not None:
            self._notifier.stop()
        for window in list(self._windows.values()):
            window.close()
        if self._icon is not None:
            self._icon.stop()
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(STOP_TIMEOUT_SECONDS)
        if self._root is not None:
            for timer in self._timers.values():
                self._root.after_cancel(timer)
            self._timers.clear()
            self._root.tk.deletefilehandler(self._wake_read)
            self._root.destroy()
            self._root = None
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        self.engine.close()
        log.info("tray stopped")

    def _display_lost(self) -> None:
        """Xlib's fatal IO error handler, on whichever thread found the display gone: it must never return."""
        with self._leaving:  # a second thread that finds it gone waits here until the process has ended
            log.error(
                "the display %s went away (the X server stopped or the desktop session ended); the tray stopped. "
                "Sessions still being followed resume when it starts again (fluxmon tray)",
                os.environ.get("DISPLAY", ""),
            )
            logging.disable(logging.CRITICAL)  # the line above is the whole story
            for producer in (self.engine, self._notifier):
                if producer is not None:
                    with contextlib.suppress(Exception):
                        producer.stop()
            os._exit(EXIT_DISPLAY_LOST)

    def _drain_snapshots(self) -> None:
        """The producers have stopped: tell what they left in the queue; nothing else matters any more."""
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind is Message.SNAPSHOT:
                try:
                    self._snapshot(payload)
                except Exception:
                    log.exception("handling a last snapshot failed")

    # --- the UI thread ---------------------------------------------------------------------------------------

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_read, 4096)
        changed = False
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                changed |= self._handle(kind, payload)
            except Exception:
                # One error boundary per message: a bug in one handler must not take the tray down.
                log.exception("handling %s failed", kind)
        if changed:
            self._refresh()

    def _handle(self, kind: Message, payload: Any) -> bool:
        """Apply one message; True when the icon or menu may need redrawing."""
        if kind is Message.SNAPSHOT:
            self._snapshot(payload)
            if payload.state.final:  # an outcome, maybe on a branch Flux no longer follows
                self._look_for_unfollowed()
            return True
        if kind is Message.HEALTH:
            changed = self._health(payload)
            return self._look_for_unfollowed() or changed  # the cluster (re)read: what Flux follows may differ
        if kind is Message.CONFIG:
            return self._config_changed()
        if kind is Message.DETAILS:
            self.open_details(payload)
        elif kind is Message.FOLLOW:
            self.engine.add(payload)
        elif kind is Message.ACTION:
            return self._action(payload)
        elif kind is Message.RECONCILED:
            log.info("%s", payload)
        elif kind is Message.REPORTED:
            self._open_report(payload)
        elif kind is Message.QUIT:
            self._root.quit()
        return False

    def _snapshot(self, snapshot: PushSnapshot) -> None:
        self.snapshots[snapshot.id] = snapshot
        self._trim()
        self._notify(snapshot)
        window = self._windows.get(snapshot.id)
        if window is not None:
            window.update(snapshot)
        if self._observer is not None:
            self._observer(snapshot)

    def _health(self, health: ClusterHealth) -> bool:
        """The engine decided a cluster's health changed: show its problem, if any (a cluster the engine no longer
        follows, told just before a restart on other contexts, is not shown)."""
        if self.engine.running and health.context not in self.engine.contexts:
            return False
        previous = self.healths.get(health.context)
        self.healths[health.context] = health
        return previous is None or previous.problem != health.problem

    def _notify(self, snapshot: PushSnapshot) -> None:
        """Tell a final outcome once: told at once when deliberately not sent, else once it went out."""
        if not snapshot.state.final or (snapshot.id, snapshot.state.value) in self._sent:
            return
        if self._store.was_told(snapshot.id):  # told before a restart that resumed it, before it settled
            self._sent.add((snapshot.id, snapshot.state.value))
            return
        paused = self.paused_until if self.paused_until and datetime.now() < self.paused_until else None
        notification = notification_for(
            snapshot,
            sent=self._sent,
            paused_until=paused,
            now=datetime.now(),
            outcomes=self.config.notify_on,
            fixes=failures_fixed_by(snapshot, self.snapshots.values()),
        )
        if notification is None:
            self._told(snapshot.id)
        elif self._notifier is not None:
            log.info("notifying: %s", notification.title)
            self._notifier.send(notification)

    def _delivered(self, notification: Notification) -> None:
        """From the notifier's thread: the notification went out (the store is safe from any thread)."""
        self._told(notification.session_id)

    def _told(self, session_id: str) -> None:
        try:
            self._store.told(session_id)
        except OSError as exc:  # at worst it is told again at the next start
            log.warning("could not record that session %s was told: %s", session_id, exc)

    def _action(self, action: Action) -> bool:
        if action.name is MenuAction.DETAILS:
            self.open_details(action.argument)
        elif action.name is MenuAction.PAUSE:
            self.paused_until = pause_until(action.argument, datetime.now())
            log.info("notifications %s", f"paused until {self.paused_until}" if self.paused_until else "resumed")
            self._save_pause()
            self._arm_pause_end()
            return True
        elif action.name is MenuAction.RECONCILE:
            self._reconcile(action.argument, action.context)
        elif action.name is MenuAction.OPEN_CONFIG:
            self._open_config()
        elif action.name is MenuAction.REPORT:
            self._report()
        elif action.name is MenuAction.QUIT:
            self._root.quit()
        return False

    def open_details(self, session_id: str) -> None:
        """The details window of a push (raised if it is open already)."""
        from fluxmon.tray.details import DetailsWindow

        if session_id in self._windows:
            self._windows[session_id].raise_()
            return
        snapshot = self.snapshots.get(session_id)
        if snapshot is None:
            log.info("no session %r to show", session_id)
            return
        self._windows[session_id] = DetailsWindow(self._root, snapshot, on_closed=self._details_closed)
        log.info("details window opened for %s", session_id)

    def _details_closed(self, session_id: str) -> None:
        self._windows.pop(session_id, None)
        log.info("details window closed for %s", session_id)

    def _reconcile(self, session_id: str, context: str = "") -> None:
        """`flux reconcile --with-source` for a push, on the cluster `context` ("": on every cluster it is followed
        on), each cluster asked for its own objects; one cluster that fails does not keep the others from it."""
        snapshot, engine = self.snapshots.get(session_id), self.engine
        if snapshot is None or not engine.running:
            return
        asks: list[tuple[str, list[ObjectRef]]] = [
            (cluster.context, [r.ref for r in cluster.resources if r.role in (Role.SOURCE, Role.KUSTOMIZATION)])
            for cluster in snapshot.clusters
            if not context or cluster.context == context
        ]
        several = snapshot.several

        def request() -> None:
            for where, refs in asks:
                on = f" on {display_line(where)}" if several else ""
                try:
                    done = engine.reconcile_now(where, refs)
                    self.post(Message.RECONCILED, f"requested a reconcile of {', '.join(done) or 'nothing'}{on}")
                except FluxmonError as error:
                    self.post(Message.RECONCILED, f"reconcile{on} failed: {error.title}: {error.message}")

        self._workers = [w for w in self._workers if w.is_alive()]
        worker = threading.Thread(target=request, name="fluxmon-reconcile", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _report(self) -> None:
        """*Report…*: the last 30 days of the history as a page (fluxmon/reportpage.py), written off the UI thread
        (it reads the history and draws charts), then opened in the browser."""
        from fluxmon.reportpage import tray_report

        store, retention = self._store, self.config.retention

        def write() -> None:
            try:
                self.post(Message.REPORTED, tray_report(store.directory, retention, runtime_dir() / "reports"))
            except (OSError, FluxmonError) as exc:
                self.post(Message.REPORTED, f"the report could not be written: {exc}")

        self._workers = [w for w in self._workers if w.is_alive()]
        worker = threading.Thread(target=write, name="fluxmon-report", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _open_report(self, written: Path | str) -> None:
        if isinstance(written, str):
            log.warning("%s", written)
            return
        log.info("report written to %s", written)
        try:
            self._children.append(subprocess.Popen(["xdg-open", str(written)], stdin=subprocess.DEVNULL))
            self._arm("reap", REAP_SECONDS, self._reap)
        except OSError as exc:
            log.warning("cannot open %s (%s): open it in a browser", written, exc)

    def _open_config(self) -> None:
        path = user_config_path()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        try:
            # An argument list, never a shell: the path is ours, but nothing here goes through one anyway.
            self._children.append(subprocess.Popen(["xdg-open", str(path)], stdin=subprocess.DEVNULL))
            self._arm("reap", REAP_SECONDS, self._reap)
        except OSError as exc:
            log.warning("cannot open %s (%s): edit it with any text editor", path, exc)

    # --- timers: each armed for a deadline, never a tick (main thread) ----------------------------------------

    def _arm(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the UI thread after `seconds`, in place of the timer `name` if one is armed."""
        self._disarm(name)

        def fire() -> None:
            self._timers.pop(name, None)
            try:
                callback()
            except Exception:  # each timer's error boundary: the tray goes on
                log.exception("the tray's %s timer failed", name)

        self._timers[name] = self._root.after(max(round(seconds * 1000), 1), fire)

    def _disarm(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            self._root.after_cancel(timer)

    def _arm_pause_end(self) -> None:
        if self.paused_until is None:
            self._disarm("pause")
            return
        left = (self.paused_until - datetime.now()).total_seconds()
        self._arm("pause", min(max(left, 0.0), PAUSE_CHECK_MAX_SECONDS), self._pause_ended)

    def _pause_ended(self) -> None:
        if self.paused_until is not None and datetime.now() >= self.paused_until:
            self.paused_until = None
            log.info("notifications resumed (the pause ended)")
            self._save_pause()
            self._refresh()
        self._arm_pause_end()

    def _check_unfollowed(self) -> None:
        """Look now, and again in UNFOLLOWED_CHECK_SECONDS for as long as the engine follows a cluster."""
        if not self.engine.running:
            self._disarm("unfollowed")
            return
        if self._look_for_unfollowed():
            self._refresh()
        self._arm("unfollowed", UNFOLLOWED_CHECK_SECONDS, self._check_unfollowed)

    def _reap(self) -> None:
        self._children = [child for child in self._children if child.poll() is None]
        if self._children:
            self._arm("reap", REAP_SECONDS, self._reap)

    def _config_changed(self) -> bool:
        """Something changed where the config file lives: follow a folder that appeared, then apply the file if
        it changed; whether the icon or menu may need redrawing."""
        self._config_watch.rearm()
        stamp = file_stamp(user_config_path())
        if stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        self._reload_config()
        return True

    def _save_pause(self) -> None:
        try:
            self._store.save_pause(self.paused_until)
        except (FluxmonError, OSError) as exc:  # the pause holds for this run all the same
            log.warning("could not keep the pause for the next start: %s", exc)

    def _reload_config(self) -> None:
        """The user's config file changed: apply it, or show why it cannot be (keeping the settings in force)."""
        old = self.config
        new = reload_user_config(old)
        self.config = new
        self.config_problem = "; ".join(new.warnings)
        if self.config_problem:
            log.warning("%s", self.config_problem)
            return
        log.info("applied the settings in %s", user_config_path())
        engine = self.engine
        targets = self._configured_targets(new) if self._follows_config else engine.targets  # the command line's stay
        if (targets, new.monitor_types) != (engine.targets, engine.kinds):
            was_running = engine.running
            engine.stop()
            engine.targets, engine.kinds, engine.default_timeout = targets, new.monitor_types, new.timeout_seconds
            self.healths.clear()  # of the clusters as they were followed; the restarted engine tells them anew
            if was_running:
                log.info("following the cluster again with the new settings (active sessions resume)")
                self._connect()
        engine.default_timeout = new.timeout_seconds

    def _configured_targets(self, config: Config) -> tuple[ClusterTarget, ...]:
        """The clusters the config file names (`contexts`, else `context`, else the current one), looked up in the
        kubeconfig the tray was started with."""
        return resolve_targets(flag_contexts=(), all_contexts=False, kubeconfig=self._kubeconfig, config=config)

    def _look_for_unfollowed(self) -> bool:
        """Whether the sessions Flux no longer follows changed (each such failure or timeout is said once)."""
        if not self.engine.running:
            return False
        gone = self.engine.unfollowed([s for s in self.snapshots.values() if s.state.final])
        if gone is None or gone == self.unfollowed:
            return False  # unknown for now: what was known stands
        for session_id in gone - self.unfollowed:
            snapshot = self.snapshots[session_id]
            if snapshot.state in (SessionState.FAILED, SessionState.TIMED_OUT):
                log.info(
                    "Flux no longer follows %s %s: the %s of %s no longer counts",
                    snapshot.remote,
                    snapshot.branch,
                    "failure" if snapshot.state is SessionState.FAILED else "timeout",
                    snapshot.short_commit,
                )
        self.unfollowed = gone
        return True

    def _overview(self) -> Overview:
        several = len(self.engine.targets) > 1
        problems = cluster_problems(self.healths.values(), several=several)
        for line in self.engine.unconnected:  # `<context>: <why>`, each left out while the others are followed
            context, _, why = line.partition(": ")
            problems[context if several else ""] = why
        if self.connect_problem:
            problems = {"": self.connect_problem}  # no cluster is followed: the engine could not start
        return overview(
            self.snapshots.values(),
            cluster_problems=problems,
            paused_until=self.paused_until,
            unfollowed=self.unfollowed,
            config_problem=self.config_problem,
        )

    def _build_menu(self, view: Overview) -> tuple[Entry, ...]:
        recent = sorted(self.snapshots.values(), key=lambda s: s.started_at, reverse=True)[:RECENT_SESSIONS]
        return build_menu(
            summary=view.summary,
            recent=recent,
            paused_until=self.paused_until,
            can_reconcile=bool(recent and self.engine.running),
            config_problem=self.config_problem,
        )

    def _refresh(self) -> None:
        """Redraw the icon, tooltip and (when it changed) the menu from the current state."""
        view = self._overview()
        menu = self._build_menu(view)
        changed_menu = menu != self._menu
        self._menu = menu
        if self._icon is not None:
            self._icon.show(state=view.state, tooltip=view.tooltip, menu=menu if changed_menu else None)
        if self.shown is None or (view.state, view.tooltip) != (self.shown.state, self.shown.tooltip):
            log.info("icon: %s | %s", view.state.value, view.tooltip.replace("\n", " | "))
        if changed_menu:
            log.debug("menu:\n%s", "\n".join(outline(menu)))
        self.shown = view

    def _trim(self) -> None:
        """Keep the open and the newest sessions; older ones live on in the history file."""
        keep = sorted(self.snapshots.values(), key=lambda s: s.started_at, reverse=True)
        active = [s for s in keep if not s.state.final]
        final = [s for s in keep if s.state.final][: RECENT_SESSIONS * 2]
        kept = {s.id for s in (*active, *final)} | set(self._windows)
        self.snapshots = {k: v for k, v in self.snapshots.items() if k in kept}
        self._sent = {key for key in self._sent if key[0] in kept}  # a dropped session sends no more snapshots


def report_leftover_threads() -> None:
    """After a clean stop only the main thread is left; anything else is a bug worth a loud line."""
    leftover = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if leftover:
        log.error("threads still running after the tray stopped: %s", ", ".join(leftover))


def on_display_lost(handler: Callable[[], None]) -> object:
    """Make `handler` Xlib's fatal IO error handler (process-wide: Tk's and GTK's connections alike).

    Returns the callback, which the caller must keep; None where there is no libX11 (nothing to watch).
    """
    library = ctypes.util.find_library("X11")
    if library is None:
        return None
    xlib = ctypes.CDLL(library)
    prototype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)

    def fatal(_display: int | None) -> int:
        handler()
        return 0  # not reached: the handler ends the process

    callback = prototype(fatal)
    xlib.XSetIOErrorHandler.argtypes = [prototype]
    xlib.XSetIOErrorHandler(callback)
    return callback
