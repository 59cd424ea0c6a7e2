"""An idle tray does not tick (issue 16): what it used to look at every second now tells it when it changes.

- The config file: a real watchdog observer (tray/configwatch.py) on the folder that holds it, or on its nearest
  existing parent until that folder is made, and on the folder of the file a link points to (a dotfiles checkout).
  Each test waits on the change being told (an Event, with a timeout), never on a sleep.
- The details window's clock: redrawn while its push runs, and no timer at all once the push has ended.
The real tray applying a config written while it runs is in tests/test_hostile_tray.py and test_tray_clusters.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fluxmon.core.session import SessionState
from fluxmon.tray.configwatch import ConfigWatch, concerns, watched_folders
from harness.snapshots import pushed

if TYPE_CHECKING:
    import tkinter

TOLD_TIMEOUT_SECONDS = 10.0


class Told:
    """What ConfigWatch calls (on watchdog's thread): counts, and lets a test wait for the next call."""

    def __init__(self) -> None:
        self.calls = 0
        self._event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self._event.set()

    def wait(self, what: str) -> None:
        assert self._event.wait(TOLD_TIMEOUT_SECONDS), f"not told within {TOLD_TIMEOUT_SECONDS:.0f}s of {what}"
        self._event.clear()


@pytest.fixture
def told() -> Told:
    return Told()


@pytest.fixture
def watching(told: Told, tmp_path: Path) -> Iterator[ConfigWatch]:
    watch = ConfigWatch(tmp_path / "config" / "fluxmon" / "config.toml", on_change=told)
    yield watch
    watch.stop()


def save_atomically(path: Path, text: str) -> None:
    """As editors and `fluxmon` itself save: a temporary file beside it, renamed over it."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def test_a_config_folder_made_after_the_start_is_watched_from_then_on(watching: ConfigWatch, told: Told) -> None:
    config = watching.path
    (config.parent.parent).mkdir()  # ~/.config exists, ~/.config/fluxmon not yet
    watching.start()
    assert watching.folders == {config.parent.parent}
    config.parent.mkdir()
    told.wait("the config folder made")
    watching.rearm()  # what the tray does first on being told
    assert watching.folders == {config.parent}
    config.write_text('timeout = "5m"\n', encoding="utf-8")
    told.wait("the file written")
    save_atomically(config, 'timeout = "10m"\n')
    told.wait("the file saved through a rename")
    config.unlink()
    told.wait("the file removed")


def test_the_file_a_linked_config_points_to_is_watched_where_it_lives(
    watching: ConfigWatch, told: Told, tmp_path: Path
) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "fluxmon.toml"
    target.write_text('timeout = "5m"\n', encoding="utf-8")
    watching.path.parent.mkdir(parents=True)
    watching.path.symlink_to(target)
    watching.start()
    assert watching.folders == {watching.path.parent, dotfiles}
    save_atomically(target, 'timeout = "10m"\n')  # edited in the checkout: nothing changes beside the link
    told.wait("the linked file saved in its own folder")


def test_only_changes_that_can_change_the_file_are_told(tmp_path: Path) -> None:
    config = tmp_path / "config" / "fluxmon" / "config.toml"
    assert concerns((str(config),), config)
    assert concerns(("", str(config)), config)  # a move onto it: its destination
    assert concerns((str(config.parent),), config)  # its folder made, moved or removed
    assert concerns((str(tmp_path / "config"),), config)
    assert not concerns((str(config.parent / "other.toml"),), config)
    assert not concerns((str(tmp_path / "config" / "fluxmon-backup"),), config)
    assert not concerns(("",), config)


def test_the_nearest_existing_folder_is_watched_until_the_config_folder_exists(tmp_path: Path) -> None:
    config = tmp_path / "config" / "fluxmon" / "config.toml"
    assert watched_folders(config) == {tmp_path}
    config.parent.mkdir(parents=True)
    assert watched_folders(config) == {config.parent}


def test_a_change_that_lands_before_the_rearm_is_told_once_the_folder_is_watched(
    watching: ConfigWatch, told: Told
) -> None:
    """mkdir and the write come together: the folder's event is told; the tray re-arms and then reads the file."""
    config = watching.path
    config.parent.parent.mkdir()
    watching.start()
    config.parent.mkdir()
    config.write_text('timeout = "5m"\n', encoding="utf-8")  # before any re-arm: only the folder's event is seen
    told.wait("the config folder made")
    watching.rearm()
    assert config.exists()  # the tray compares the file's stamp after re-arming, so this write is applied
    os.utime(config)
    told.wait("a later change to the file, in the watched folder")


tk = pytest.importorskip("tkinter", reason="this Python was built without Tk (Debian: python3-tk, or tk-dev)")


def test_the_details_clock_runs_only_while_the_push_does(root: tkinter.Tk) -> None:
    from fluxmon.tray.details import DetailsWindow

    closed: list[str] = []
    window = DetailsWindow(root, pushed(SessionState.RECONCILING), on_closed=closed.append)
    assert window.clock_running
    window.update(pushed(SessionState.SUCCEEDED))
    assert not window.clock_running  # an ended push's duration no longer changes: nothing to redraw
    window.update(pushed(SessionState.RECONCILING))  # resumed on another cluster, say
    assert window.clock_running
    window.close()
    assert not window.clock_running
    assert root.tk.call("after", "info") == ""  # no timer left behind to fire on a destroyed window
