"""The details window: one push, as a tree of the Flux objects that deploy it, updated live.

A tkinter Toplevel, created and updated on the UI thread only (tray.app drains the queue that workers fill).
Selecting a row shows everything known about it; a failed row (selected at once when the window opens on a
failure) shows the full error, the recent Warning events, the hint with its docs link, and a command to copy.

A push followed on several clusters gets a tab per cluster (ttk.Notebook), each holding that cluster's own tree,
errors and hints, its tab marked with the cluster's state; the window opens on the tab of the cluster that failed.
With one cluster there are no tabs: the window looks as it always did.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from datetime import datetime
from tkinter import ttk

from fluxmon.core.marks import AMBER, PHASE_LOOKS, STATE_LOOKS, TrayState
from fluxmon.core.objects import ObjectRef
from fluxmon.core.overview import describe, describe_session, format_duration, tray_state_of
from fluxmon.core.push import PushSnapshot
from fluxmon.core.redact import redact_text
from fluxmon.core.revision import short_revision
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionState
from fluxmon.core.text import display_line, display_value
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
CLOCK_SECONDS = 1.0
"""The header's clock is redrawn this often while the push runs (and never once it has ended)."""


def title_for(snapshot: PushSnapshot) -> str:
    return f"{TITLE_PREFIX}{snapshot.branch}@{snapshot.short_commit}"


def tab_text(session: SessionSnapshot) -> str:
    """`✗ prod`: a cluster's tab, marked with its state (the context on one line: it is the kubeconfig's text)."""
    return f"{STATE_LOOKS[tray_state_of(session) or TrayState.IDLE].mark} {display_line(session.context)}"


class DetailsWindow:
    """`update(snapshot)` redraws in place; `close()` (Escape, the window manager, or the app) destroys it."""

    def __init__(self, root: tk.Tk, snapshot: PushSnapshot, *, on_closed: Callable[[str], None]) -> None:
        snapshot = display_value(snapshot)  # git's and the cluster's text, with no raw control characters
        self.session_id = snapshot.id
        self._on_closed = on_closed
        self._snapshot = snapshot
        self.panels: dict[str, ClusterPanel] = {}
        """One per cluster, by context, in the push's order."""
        self._notebook: ttk.Notebook | None = None
        self._body: ttk.Frame | None = None
        self._failure_shown = False
        """The failed cluster's tab was brought forward once; from then on the user chooses the tab."""
        self._clock: str | None = None
        """Tk's id of the clock's next redraw, armed only while the push runs."""
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
        self._outer = ttk.Frame(self.top, padding=10)
        self._outer.pack(fill=tk.BOTH, expand=True)
        header = ttk.Frame(self._outer)
        header.pack(fill=tk.X)
        # One line each, so that a long subject or path never hides the outcome.
        self._commit = ttk.Label(header, font=("TkDefaultFont", 12, "bold"))
        self._commit.grid(row=0, column=0, sticky="w")
        self._outcome = ttk.Label(header, font=("TkDefaultFont", 11, "bold"))
        self._outcome.grid(row=1, column=0, sticky="w")
        self._where = ttk.Label(header)
        self._where.grid(row=2, column=0, sticky="w")
        header.columnconfigure(0, weight=1)

    # typeshed leaves ttk.Notebook's tab() and select() unannotated, hence the ignores below.

    def _lay_out(self, snapshot: PushSnapshot) -> None:
        """A panel per cluster: in tabs when there are several, else the one panel alone (rebuilt if the clusters
        change, as when the tray follows other contexts and the push resumes on them)."""
        if self._body is not None:
            self._body.destroy()
        self._body = ttk.Frame(self._outer)
        self._body.pack(fill=tk.BOTH, expand=True, pady=(8, 0))
        self.panels = {}
        self._notebook = None
        if not snapshot.several:
            panel = ClusterPanel(self._body, on_close=self.close, heading=False)
            panel.frame.pack(fill=tk.BOTH, expand=True)
            self.panels[snapshot.first.context] = panel
            return
        self._notebook = ttk.Notebook(self._body)
        self._notebook.pack(fill=tk.BOTH, expand=True)
        for cluster in snapshot.clusters:
            panel = ClusterPanel(self._notebook, on_close=self.close, heading=True)
            self._notebook.add(panel.frame, text=tab_text(cluster), padding=(0, 6, 0, 0))
            self.panels[cluster.context] = panel
        self._failure_shown = False

    # --- content -----------------------------------------------------------------------------------------------

    def update(self, snapshot: PushSnapshot) -> None:
        snapshot = display_value(snapshot)
        self._snapshot = snapshot
        self._commit.configure(text=f"{snapshot.short_commit}  {snapshot.subject}".rstrip())
        look = STATE_LOOKS[tray_state_of(snapshot) or TrayState.IDLE]
        # One line: a context's name is the kubeconfig's text, and could break it.
        self._outcome.configure(text=display_line(f"{look.mark} {describe(snapshot)}"), foreground=look.tk or AMBER)
        self.tick()
        if tuple(self.panels) != tuple(cluster.context for cluster in snapshot.clusters) or self._body is None:
            self._lay_out(snapshot)
        for cluster in snapshot.clusters:
            self.panels[cluster.context].update(cluster)
        if self._notebook is not None:
            for cluster, panel in zip(snapshot.clusters, self.panels.values(), strict=True):
                self._notebook.tab(panel.frame, text=tab_text(cluster))  # type: ignore[no-untyped-call]
            failed = self.panels.get(snapshot.failed_on) if snapshot.failed_on else None
            if failed is not None and not self._failure_shown:
                self._notebook.select(failed.frame)  # type: ignore[no-untyped-call]
                self._failure_shown = True

    def tick(self) -> None:
        """The header's clock, redrawn every CLOCK_SECONDS while the push runs; the window's only timer."""
        snapshot = self._snapshot
        elapsed = snapshot.elapsed if snapshot.state.final else time.time() - snapshot.started_at
        pushed = datetime.fromtimestamp(snapshot.started_at).strftime("%Y-%m-%d %H:%M:%S")
        self._where.configure(
            text=f"{snapshot.remote} · {snapshot.branch} · pushed {pushed} · {format_duration(elapsed)}"
        )
        if self._clock is not None:
            self.top.after_cancel(self._clock)
            self._clock = None
        if not snapshot.state.final:
            self._clock = self.top.after(round(CLOCK_SECONDS * 1000), self._next_tick)

    def _next_tick(self) -> None:
        self._clock = None
        self.tick()

    @property
    def clock_running(self) -> bool:
        """Whether the clock will be redrawn (for tests: never once the push has ended)."""
        return self._clock is not None

    def panel(self, context: str | None = None) -> ClusterPanel:
        """A cluster's panel: `context`'s, else the tab shown (or the only one)."""
        if context is not None:
            return self.panels[context]
        if self._notebook is not None:
            shown = str(self._notebook.select())  # type: ignore[no-untyped-call]
            return next(p for p in self.panels.values() if str(p.frame) == shown)
        return next(iter(self.panels.values()))

    def shown_context(self) -> str:
        """The context of the tab shown (with one cluster, its only one)."""
        chosen = self.panel()
        return next(context for context, panel in self.panels.items() if panel is chosen)

    def show_context(self, context: str) -> None:
        """Bring a cluster's tab to the front (what a click on the tab does)."""
        if self._notebook is not None:
            self._notebook.select(self.panels[context].frame)  # type: ignore[no-untyped-call]
            self._notebook.update()

    def tab_texts(self) -> list[str]:
        """The tabs' labels, in order (none with one cluster): what a user reads, for tests."""
        if self._notebook is None:
            return []
        return [str(self._notebook.tab(panel.frame, "text")) for panel in self.panels.values()]  # type: ignore[no-untyped-call]

    def outcome_text(self) -> str:
        return str(self._outcome.cget("text"))

    def rows(self, context: str | None = None) -> list[tuple[int, str, tuple[str, ...]]]:
        """(depth, resource, column values) in display order: what a user reads, for tests."""
        return self.panel(context).rows()

    def detail_text(self, context: str | None = None) -> str:
        return self.panel(context).detail_text()

    @property
    def copy_button(self) -> ttk.Button:
        return self.panel().copy_button

    def select(self, ref: ObjectRef, context: str | None = None) -> None:
        self.panel(context).select(ref)

    def close(self) -> None:
        if self._clock is not None:
            self.top.after_cancel(self._clock)
            self._clock = None
        self.top.destroy()
        self._on_closed(self.session_id)

    def raise_(self) -> None:
        self.top.deiconify()
        self.top.lift()
        self.top.focus_force()


class ClusterPanel:
    """One cluster's session: the tree of the Flux objects that deploy the push there, and the selected row's
    detail. `heading`: a line with the cluster's own outcome (in a tab; alone, the window's header says it)."""

    def __init__(self, parent: tk.Misc, *, on_close: Callable[[], None], heading: bool) -> None:
        self._session: SessionSnapshot | None = None
        self._selected_by_user = False
        self._command = ""
        """The selected row's command to dig further, for the Copy button."""
        self.frame = ttk.Frame(parent)
        self._heading: ttk.Label | None = None
        if heading:
            self._heading = ttk.Label(self.frame, font=("TkDefaultFont", 10, "bold"))
            self._heading.pack(fill=tk.X, pady=(0, 4))
        panes = ttk.PanedWindow(self.frame, orient=tk.VERTICAL)
        panes.pack(fill=tk.BOTH, expand=True)
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
        ttk.Button(buttons, text="Close", command=on_close).pack(side=tk.RIGHT)
        panes.add(detail, weight=3)

    def update(self, session: SessionSnapshot) -> None:
        """Redraw from the cluster's latest session (already made safe to show by the window)."""
        self._session = session
        if self._heading is not None:
            look = STATE_LOOKS[tray_state_of(session) or TrayState.IDLE]
            line = f"{look.mark} {display_line(session.context)}: {describe_session(session)}"
            if session.state is SessionState.NOT_DEPLOYED or (session.cluster.problem and not session.state.final):
                line += f" · {display_line(redact_text(session.cluster.problem or session.message))}"
            self._heading.configure(text=line, foreground=look.tk or AMBER)
        selected = self.tree.selection()
        self.tree.delete(*self.tree.get_children())
        known = {r.ref for r in session.resources}
        for resource in session.resources:
            parent = str(resource.parent) if resource.parent in known else ""
            if parent and not self.tree.exists(parent):
                parent = ""
            self.tree.insert(
                parent, tk.END, iid=str(resource.ref), text=_name(resource), values=_row(resource), open=True,
                tags=(resource.phase.value,),
            )  # fmt: skip
        if selected and self.tree.exists(selected[0]):
            self.tree.selection_set(selected[0])
        elif session.failed is not None and not self._selected_by_user and self.tree.exists(str(session.failed)):
            self.tree.selection_set(str(session.failed))
        else:
            self._show_detail(None)

    def rows(self) -> list[tuple[int, str, tuple[str, ...]]]:
        found: list[tuple[int, str, tuple[str, ...]]] = []

        def walk(item: str, depth: int) -> None:
            for child in self.tree.get_children(item):
                found.append((depth, self.tree.item(child, "text"), tuple(self.tree.item(child, "values"))))
                walk(child, depth + 1)

        walk("", 0)
        return found

    def heading(self) -> str:
        return str(self._heading.cget("text")) if self._heading is not None else ""

    def detail_text(self) -> str:
        return self.text.get("1.0", tk.END).strip()

    def select(self, ref: ObjectRef) -> None:
        self.tree.selection_set(str(ref))
        self.tree.update()

    def _selected(self, _event: object) -> None:
        session = self._session
        if session is None:
            return
        selection = self.tree.selection()
        if selection and selection[0] != str(session.failed):
            self._selected_by_user = True
        resource = next((r for r in session.resources if selection and str(r.ref) == selection[0]), None)
        self._show_detail(resource)

    def _show_detail(self, resource: ResourceStatus | None) -> None:
        self.text.configure(state=tk.NORMAL)
        self.text.delete("1.0", tk.END)
        self._command = ""
        if resource is None:
            notes = "\n".join(self._session.notes) if self._session is not None else ""
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
        self.frame.clipboard_clear()
        self.frame.clipboard_append(self._command)


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
