"""The details window in this process, on the test desktop's display: its rows, its detail pane, live updates."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import tkinter

tk = pytest.importorskip("tkinter", reason="this Python was built without Tk (Debian: python3-tk, or tk-dev)")

from fluxmon.core.session import SessionState  # noqa: E402 - after the skip: tray.details imports tkinter
from fluxmon.tray.details import DetailsWindow, title_for  # noqa: E402
from harness.snapshots import APPS, BUILD_ERROR, SOURCE, failed_snapshot, snapshot  # noqa: E402


@pytest.fixture
def root(tk_display: str) -> Iterator[tkinter.Tk]:
    root = tk.Tk(screenName=tk_display)
    root.withdraw()
    yield root
    root.destroy()
    # Tk objects must die on this thread: left to the cyclic GC, they may be collected on any thread (a
    # simulator's, later), and Tcl aborts the process when an interpreter is deleted off its own thread.
    del root
    gc.collect()


def test_the_tree_nests_sources_kustomizations_and_releases_and_shows_the_failure(root: tkinter.Tk) -> None:
    closed: list[str] = []
    session = failed_snapshot()
    window = DetailsWindow(root, session, on_closed=closed.append)
    root.update()
    assert window.top.title() == "Flux Push Monitor — main@1a2b3c4"
    assert title_for(session) == window.top.title()
    assert [(depth, name, values[0]) for depth, name, values in window.rows()] == [
        (0, "GitRepository flux-system/flux-system", "✔ Ready"),
        (1, "Kustomization flux-system/infrastructure", "► Progressing"),
        (1, "Kustomization flux-system/apps", "✗ Failed"),
        (2, "HelmRelease apps/podinfo", "◎ Pending"),
    ]
    apps_row = window.rows()[2][2]
    assert apps_row[1] == "main@sha1:1a2b3c4d"  # revisions as `flux get` shortens them
    assert apps_row[2] == "2s"
    assert apps_row[3] == f"BuildFailed: {BUILD_ERROR} · depends on infrastructure"  # the error first

    detail = window.detail_text()  # the failed row is selected as the window opens
    assert detail.startswith("Kustomization flux-system/apps: Failed (BuildFailed)")
    assert BUILD_ERROR in detail  # the Warning event says more than the condition
    assert "Recent Warning events" in detail
    assert "BuildFailed x2" in detail
    assert "https://fluxcd.io/flux/components/kustomize/kustomizations/" in detail
    command = next(r.hint for r in session.resources if r.ref == APPS).command  # type: ignore[union-attr]
    assert command in detail
    window.copy_button.invoke()
    assert root.clipboard_get() == command

    window.top.event_generate("<Escape>")
    root.update()
    assert closed == ["s1"]
    assert not window.top.winfo_exists()


def test_it_updates_live_keeps_the_users_selection_and_redacts(root: tkinter.Tk) -> None:
    running = snapshot(SessionState.RECONCILING)
    window = DetailsWindow(root, running, on_closed=lambda _id: None)
    window.select(SOURCE)
    assert window.detail_text().startswith("GitRepository flux-system/flux-system: Ready")
    leaky = replace(running.resources[0], message="stored artifact from https://bot:tok3n@git.example.com/acme/fleet")
    window.update(replace(snapshot(), resources=(leaky, *snapshot().resources[1:])))
    root.update()
    assert [values[0] for _depth, _name, values in window.rows()] == ["✔ Ready"] * 4
    assert window.rows()[0][2][3] == "stored artifact from https://***@git.example.com/acme/fleet"
    assert "tok3n" not in window.detail_text()
    assert window.detail_text().startswith("GitRepository flux-system/flux-system: Ready")  # still the user's pick
    window.close()
