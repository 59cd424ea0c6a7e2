"""The tray menu as plain data, rebuilt from the app's state on every change.

Keeping it free of pystray means the menu's contents are tested without a display, and the icon thread only ever
sees an immutable value: it turns the entries into a pystray.Menu (tray.icon) and calls back with an Action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePath

from fluxmon.core.overview import session_line, shorten
from fluxmon.core.push import PushSnapshot
from fluxmon.core.text import display_line

RECENT_SESSIONS = 10
PROBLEM_CHARS = 90
"""A menu item is one line; the tooltip carries the whole of a config problem."""


class MenuAction(StrEnum):
    DETAILS = "details"
    RECONCILE = "reconcile"
    PAUSE = "pause"
    OPEN_CONFIG = "open-config"
    REPORT = "report"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Action:
    """What a click asks the app to do, and to what (a push id, or how long to pause), and where (a reconcile's
    cluster: "" for every cluster the push is followed on)."""

    name: MenuAction
    argument: str = ""
    context: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    text: str
    action: Action | None = None
    enabled: bool = True
    default: bool = False
    """The item a left click on the icon runs (the gtk backend)."""
    submenu: tuple[Entry, ...] = ()


SEPARATOR = Entry(text="-", enabled=False)


def build_menu(
    *,
    summary: str,
    recent: Sequence[PushSnapshot],
    paused_until: datetime | None,
    can_reconcile: bool,
    config_problem: str = "",
) -> tuple[Entry, ...]:
    """The whole menu; `recent` is newest first, and its first entry is the "last session".

    A config file that could not be applied comes first, and opens the file. "Reconcile now" acts on the last
    push's cluster; when it is followed on several, it opens a submenu: every cluster at once, or one of them.
    """
    last = recent[0] if recent else None
    sessions = tuple(
        Entry(text=session_line(snapshot), action=Action(MenuAction.DETAILS, snapshot.id)) for snapshot in recent
    )
    pause_text = f"Paused until {paused_until:%a %H:%M}" if paused_until else "Not paused"
    where, _, what = config_problem.partition(": ")  # `<path>: <key>: <why>`: the file's name says enough here
    problem_text = shorten(f"{PurePath(where).name}: {what}" if what else config_problem, PROBLEM_CHARS)
    problem = (
        (Entry(text=f"⚠ Settings not applied: {problem_text}", action=Action(MenuAction.OPEN_CONFIG)),)
        if config_problem
        else ()
    )
    return (
        *problem,
        Entry(text=summary, action=Action(MenuAction.DETAILS, last.id) if last else None, enabled=last is not None),
        Entry(text="Show details…", action=Action(MenuAction.DETAILS, last.id if last else ""), default=True),
        Entry(
            text="Recent sessions",
            submenu=sessions[:RECENT_SESSIONS] or (Entry(text="No sessions yet", enabled=False),),
        ),
        SEPARATOR,
        _reconcile_entry(last, enabled=can_reconcile),
        Entry(
            text="Pause notifications",
            submenu=(
                Entry(text=pause_text, enabled=False),
                Entry(text="For 1 hour", action=Action(MenuAction.PAUSE, "hour")),
                Entry(text="Until tomorrow", action=Action(MenuAction.PAUSE, "tomorrow")),
                Entry(text="Resume", action=Action(MenuAction.PAUSE, "resume"), enabled=paused_until is not None),
            ),
        ),
        Entry(text="Open config", action=Action(MenuAction.OPEN_CONFIG)),
        Entry(text="Report…", action=Action(MenuAction.REPORT)),
        SEPARATOR,
        Entry(text="Quit", action=Action(MenuAction.QUIT)),
    )


def _reconcile_entry(last: PushSnapshot | None, *, enabled: bool) -> Entry:
    """`flux reconcile --with-source` for the last push: on its one cluster, or (a submenu) on every cluster or
    on the one chosen, each cluster with its own request for its own objects."""
    push_id = last.id if last else ""
    if last is None or not last.several:
        return Entry(text="Reconcile now", action=Action(MenuAction.RECONCILE, push_id), enabled=enabled)
    one_each = tuple(
        Entry(
            text=f"On {display_line(cluster.context)}",
            action=Action(MenuAction.RECONCILE, push_id, cluster.context),
            enabled=enabled,
        )
        for cluster in last.clusters
    )
    every = Entry(text="On every cluster", action=Action(MenuAction.RECONCILE, push_id), enabled=enabled)
    return Entry(text="Reconcile now", submenu=(every, *one_each))


def outline(entries: Sequence[Entry], depth: int = 0) -> list[str]:
    """The menu as indented text: for the debug log, and for tests to read what the icon shows."""
    lines = []
    for entry in entries:
        flag = "" if entry.enabled or entry.submenu else " (disabled)"
        lines.append("  " * depth + entry.text + flag)
        lines.extend(outline(entry.submenu, depth + 1))
    return lines
