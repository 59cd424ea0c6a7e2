"""The details window: one session, as a tree of the Flux objects that deploy it, updated live.

A tkinter Toplevel, created and updated on the UI thread only (tray.app drains the queue that workers fill).
Selecting a row shows everything known about it; a failed row (selected at once when the window opens on a
failure) shows the full error, the recent Warning events, the hint with its docs link, and a command to copy.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from datetime import datetime
from tkinter import ttk

from fluxmon.core.marks import AMBER, PHASE_LOOKS, STATE_LOOKS, TrayState
from fluxmon.core.objects import ObjectRef
from fluxmon.core.overview import describe, format_duration, tray_state_of
from fluxmon.core.redact import redact_text
from fluxmon.core.revision import short_revision
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot
from fluxmon.core.text import display_value
from fluxmon.core.verdict import Phase

TITLE_PREFIX = "Flux Push Monitor — "
GEOMETRY = "980x660"
"""Fits a 1366x768 screen with room for panels."""
COLUMNS = (
    ("state", "State", 105),
    ("revision", "Revision", 165),
    ("duration", "Time", 55),
    ("message", "Message", 320),
)
MAX_EVENTS = 5


def title_for(snapshot: SessionSnapshot) -> str:
    return f"{TITLE_PREFIX}{snapshot.branch}@{snapshot.short_commit}"


class DetailsWindow:
    """`update(snapshot)` redraws in place; `close()` (Escape, the window manager, or the app) destroys it."""

    def __init__(self, root: tk.Tk, snapshot: SessionSnapshot, *, on_closed: Callable[[str], None]) -> None:
        snapshot = display_value(snapshot)  # git's and the cluster's text, with no raw control characters
        self.session_id = snapshot.id
        self._on_closed = on_closed
        self._snapshot = snapshot
        self._selected_by_user = False
        self._command = ""
        """The selected row's command to dig further, for the Copy button."""
        self.top = tk.Toplevel(root)
        self.top.title(title_for(snapshot))
        self.top.geometry(GEOMETRY)
        self.top.minsize(720, 420)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda _event: self.close())
        self._build()
        self.update(snapshot)
        self.top.focus_force()

    # --- layout ------------------------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = ttk.Frame(self.top, padding=10)
        outer.pack(fill=tk.BOTH, expand=True)
        header = ttk.Frame(outer)
        header.pack(fill=tk.X)
        # One line each, so that a long subject or path never hides the outcome.
        self._commit = ttk.Label(header, font=("TkDefaultFont", 12, "bold"))
        self._commit.grid(row=0, column=0, sticky="w")
        self._outcome = ttk.Label(header, font=("TkDefaultFont", 11, "bold"))
        self._outcome.grid(row=1, column=0, sticky="w")
        self._where = ttk.Label(header)
        self._where.grid(row=2, column=0, sticky="w")
        header.columnconfigure(0, weight=1)

        panes = ttk.PanedWindow(outer, orient=tk.VERTICAL)
        panes.pack(fill=tk.BOTH, expand=True, pady=(8, 0))
        table = ttk.Frame(panes)
        self.tree = ttk.Treeview(table, columns=[c[0] for c in COLUMNS], selectmode="browse", height=7)
        self.tree.heading("#0", text="Resource")
        self.tree.column("#0", width=310, stretch=False)
        for name, text, width in COLUMNS:
            self.tree.heading(name, text=text)
            self.tree.column(name, width=width, stretch=name == "message")
        for phase, look in PHASE_LOOKS.items():
            if look.tk:
                self.tree.tag_configure(phase.value, foreground=look.tk)
        scroll = ttk.Scrollbar(table, orient=tk.VERTICAL, command=self.tree.yview)
        self.tree.configure(yscrollcommand=scroll.set)
        self.tree.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        scroll.pack(side=tk.RIGHT, fill=tk.Y)
        self.tree.bind("<<TreeviewSelect>>", self._selected)
        panes.add(table, weight=2)

        detail = ttk.Frame(panes)
        buttons = ttk.Frame(detail)
        buttons.pack(side=tk.BOTTOM, fill=tk.X, pady=(6, 0))
        self.text = tk.Text(detail, wrap=tk.WORD, height=12, relief=tk.FLAT, padx=6, pady=6)
        self.text.tag_configure("heading", font=("TkDefaultFont", 10, "bold"))
        self.text.tag_configure("code", font=("TkFixedFont", 10))
        text_scroll = ttk.Scrollbar(detail, orient=tk.VERTICAL, command=self.text.yview)
        self.text.configure(yscrollcommand=text_scroll.set)
        self.text.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        text_scroll.pack(side=tk.RIGHT, fill=tk.Y)
        self.copy_button = ttk.Button(buttons, text="Copy command", command=self._copy_command, state=tk.DISABLED)
        self.copy_button.pack(side=tk.LEFT)
        ttk.Button(buttons, text="Close", command=self.close).pack(side=tk.RIGHT)
        panes.add(detail, weight=3)

    # --- content -----------------------------------------------------------------------------------------------

    def update(self, snapshot: SessionSnapshot) -> None:
        snapshot = display_value(snapshot)
        self._snapshot = snapshot
        self._commit.configure(text=f"{snapshot.short_commit}  {snapshot.subject}".rstrip())
        look = STATE_LOOKS[tray_state_of(snapshot) or TrayState.IDLE]
        self._outcome.configure(text=f"{look.mark} {describe(snapshot)}", foreground=look.tk or AMBER)
        self.tick()
        selected = self.tree.selection()
        self.tree.delete(*self.tree.get_children())
        known = {r.ref for r in snapshot.resources}
        for resource in snapshot.resources:
            parent = str(resource.parent) if resource.parent in known else ""
            if parent and not self.tree.exists(parent):
                parent = ""
            self.tree.insert(
                parent, tk.END, iid=str(resource.ref), text=_name(resource), values=_row(resource), open=True,
                tags=(resource.phase.value,),
            )  # fmt: skip
        if selected and self.tree.exists(selected[0]):
            self.tree.selection_set(selected[0])
        elif snapshot.failed is not None and not self._selected_by_user and self.tree.exists(str(snapshot.failed)):
            self.tree.selection_set(str(snapshot.failed))
        else:
            self._show_detail(None)

    def tick(self) -> None:
        """The header's clock, redrawn every second while the session runs."""
        snapshot = self._snapshot
        elapsed = snapshot.elapsed if snapshot.state.final else time.time() - snapshot.started_at
        pushed = datetime.fromtimestamp(snapshot.started_at).strftime("%Y-%m-%d %H:%M:%S")
        self._where.configure(
            text=f"{snapshot.remote} · {snapshot.branch} · pushed {pushed} · {format_duration(elapsed)}"
        )

    def rows(self) -> list[tuple[int, str, tuple[str, ...]]]:
        """(depth, resource, column values) in display order: what a user reads, for tests."""
        found: list[tuple[int, str, tuple[str, ...]]] = []

        def walk(item: str, depth: int) -> None:
            for child in self.tree.get_children(item):
                found.append((depth, self.tree.item(child, "text"), tuple(self.tree.item(child, "values"))))
                walk(child, depth + 1)

        walk("", 0)
        return found

    def detail_text(self) -> str:
        return self.text.get("1.0", tk.END).strip()

    def select(self, ref: ObjectRef) -> None:
        self.tree.selection_set(str(ref))
        self.tree.update()

    def close(self) -> None:
        self.top.destroy()
        self._on_closed(self.session_id)

    def raise_(self) -> None:
        self.top.deiconify()
        self.top.lift()
        self.top.focus_force()

    def _selected(self, _event: object) -> None:
        selection = self.tree.selection()
        if selection and selection[0] != str(self._snapshot.failed):
            self._selected_by_user = True
        resource = next((r for r in self._snapshot.resources if selection and str(r.ref) == selection[0]), None)
        self._show_detail(resource)

    def _show_detail(self, resource: ResourceStatus | None) -> None:
        self.text.configure(state=tk.NORMAL)
        self.text.delete("1.0", tk.END)
        self._command = ""
        if resource is None:
            notes = "\n".join(self._snapshot.notes)
            self.text.insert(tk.END, "Select a resource to see its details.\n" + (f"\n{notes}" if notes else ""))
        else:
            self._write(resource)
        self.text.configure(state=tk.DISABLED)
        self.copy_button.configure(state=tk.NORMAL if self._command else tk.DISABLED)

    def _write(self, resource: ResourceStatus) -> None:
        ref = resource.ref
        heading = f"{ref.kind} {ref.namespace}/{ref.name}: {resource.phase.value}"
        self.text.insert(tk.END, heading + (f" ({resource.reason})" if resource.reason else "") + "\n", "heading")
        if resource.revision:
            self.text.insert(tk.END, f"revision {resource.revision}\n")
        if resource.depends_on:
            deps = ", ".join(f"{dep.name} ({phase.value})" for dep, phase in resource.depends_on)
            self.text.insert(tk.END, f"depends on {deps}\n")
        text = redact_text(resource.error if resource.phase is Phase.FAILED else resource.message)
        if text:
            self.text.insert(tk.END, "\nError\n" if resource.phase is Phase.FAILED else "\nMessage\n", "heading")
            self.text.insert(tk.END, text.strip() + "\n")
        warnings = [e for e in resource.events if e.type == "Warning"][:MAX_EVENTS]
        if warnings:
            self.text.insert(tk.END, "\nRecent Warning events\n", "heading")
            for event in warnings:
                count = f" x{event.count}" if event.count > 1 else ""
                line = f"{event.timestamp} {event.reason}{count}: {redact_text(event.message)}"
                self.text.insert(tk.END, line.strip() + "\n")
        if resource.hint is not None:
            self.text.insert(tk.END, "\nHint\n", "heading")
            self.text.insert(tk.END, f"{resource.hint.cause}\n{resource.hint.docs}\n")
            self._command = resource.hint.command
            self.text.insert(tk.END, "\nDig further\n", "heading")
            self.text.insert(tk.END, f"{self._command}\n", "code")

    def _copy_command(self) -> None:
        self.top.clipboard_clear()
        self.top.clipboard_append(self._command)


def _name(resource: ResourceStatus) -> str:
    suffix = " (upstream)" if resource.role is Role.UPSTREAM else ""
    return f"{resource.ref.kind} {resource.ref.namespace}/{resource.ref.name}{suffix}"


def _row(resource: ResourceStatus) -> tuple[str, ...]:
    if resource.phase is Phase.FAILED:
        message = resource.error.strip().splitlines()[0] if resource.error.strip() else resource.reason
        message = f"{resource.reason}: {message}" if resource.reason and resource.reason not in message else message
    else:
        message = resource.message.strip().splitlines()[0] if resource.message.strip() else resource.reason
    if resource.depends_on:
        message = f"{message} · depends on {', '.join(dep.name for dep, _ in resource.depends_on)}"
    return (
        f"{PHASE_LOOKS[resource.phase].mark} {resource.phase.value}",
        short_revision(resource.revision),
        format_duration(sum(resource.seconds_in_phase.values())),
        redact_text(message),
    )
