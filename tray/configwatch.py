"""Tells the tray when the user's config file may have changed, so that it never looks at the file on a timer.

A watchdog observer (inotify on Linux: no wakeup until something happens) watches the folders that decide what the
file holds: the file's own folder, and, when the file is a link (a dotfiles checkout), the folder of the file it
points to. A folder that does not exist yet (no `~/.config/fluxmon` before the first "Open config…") is watched
through its nearest existing parent, and the watch moves down once the folder appears (`rearm()`).

The handler only filters and posts (as the spool's does): the tray, on its own thread, re-arms the watch and then
compares the file's stamp, so a change that lands between an event and the re-arm is still seen, and an event that
changed nothing (an editor's backup file beside it) costs a `stat`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("fluxmon.tray")

STOP_TIMEOUT_SECONDS = 5.0


def watched_folders(path: Path) -> set[Path]:
    """The existing folders whose changes can change what `path` reads as: its folder (or nearest existing parent),
    and that of the file a link at `path` points to."""
    folders = set()
    for candidate in {path.absolute(), path.resolve()}:
        folder = candidate.parent
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        folders.add(folder)
    return folders


def concerns(event_paths: tuple[str, ...], path: Path) -> bool:
    """Whether an event on `event_paths` may change `path`: the file itself, the file a link there points to, or a
    folder on the way to either (created, moved or removed)."""
    targets = {path.absolute(), path.resolve()}
    for text in event_paths:
        if not text:
            continue
        changed = Path(text)
        if any(changed == target or changed in target.parents for target in targets):
            return True
    return False


class _ConfigEvents(FileSystemEventHandler):
    """Only filters and posts: everything else happens on the tray's thread."""

    def __init__(self, path: Path, on_change: Callable[[], None]) -> None:
        self._path = path
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reading the file (the tray itself does) changes nothing
        paths = (os.fsdecode(event.src_path), os.fsdecode(event.dest_path))
        if concerns(paths, self._path):
            self._on_change()


class ConfigWatch:
    """`start()`, then `on_change` is called (on watchdog's thread: post only) after anything that may have changed
    the file; call `rearm()` from the tray's thread before reading it; `stop()`."""

    def __init__(self, path: Path, *, on_change: Callable[[], None]) -> None:
        self.path = path
        self._handler = _ConfigEvents(path, on_change)
        self._observer: Any = None
        self.folders: set[Path] = set()

    def start(self) -> None:
        self._observer = Observer()
        self._observer.name = "fluxmon-config-observer"
        self._observer.start()
        self.rearm()

    def rearm(self) -> None:
        """Watch the folders that decide the file now (a folder created or removed since moves the watch)."""
        if self._observer is None:
            return
        folders = watched_folders(self.path)
        if folders == self.folders:
            return
        self._observer.unschedule_all()
        self.folders = set()
        for folder in sorted(folders):
            try:
                self._observer.schedule(self._handler, str(folder), recursive=False)
            except OSError as exc:  # out of inotify watches, or a folder gone meanwhile: the next event re-arms
                log.warning("cannot watch %s for changes to the settings (%s)", folder, exc)
                continue
            self.folders.add(folder)
        log.debug("watching %s for changes to %s", ", ".join(map(str, sorted(self.folders))), self.path)

    def stop(self) -> None:
        if self._observer is None:
            return
        self._observer.stop()
        self._observer.join(STOP_TIMEOUT_SECONDS)
        if self._observer.is_alive():
            log.error("the settings' file observer did not stop")
        self._observer = None
