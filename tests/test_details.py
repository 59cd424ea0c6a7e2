"""The details window in this process, on the test desktop's display: its rows, its detail pane, live updates."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import tkinter

tk = pytest.importorskip("tkinter", reason="this Python was built without Tk (Debian: python3-tk, or tk-dev)")

from fluxmon.core.session import SessionState  # noqa: E402 - after the skip: tray.details imports tkinter
from fluxmon.tray.details import DetailsWindow, title_for  # noqa: E402
from harness.snapshots import (  # noqa: E402
    APPS,
    BUILD_ERROR,
    SOURCE,
    failed_push,
    failed_snapshot,
    on_clusters,
    push_of,
    pushed,
    snapshot,
)


def test_the_tree_nests_sources_kustomizations_and_releases_and_shows_the_failure(root: tkinter.Tk) -> None:
    closed: list[str] = []
    session = failed_push()
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
    command = next(r.hint for r in session.first.resources if r.ref == APPS).command  # type: ignore[union-attr]
    assert command in detail
    window.copy_button.invoke()
    assert root.clipboard_get() == command

    window.top.event_generate("<Escape>")
    root.update()
    assert closed == ["s1"]
    assert not window.top.winfo_exists()


def test_it_updates_live_keeps_the_users_selection_and_redacts(root: tkinter.Tk) -> None:
    running = pushed(SessionState.RECONCILING)
    window = DetailsWindow(root, running, on_closed=lambda _id: None)
    window.select(SOURCE)
    assert window.detail_text().startswith("GitRepository flux-system/flux-system: Ready")
    leaky = replace(
        running.first.resources[0], message="stored artifact from https://bot:tok3n@git.example.com/acme/fleet"
    )
    window.update(push_of(replace(snapshot(), resources=(leaky, *snapshot().resources[1:]))))
    root.update()
    assert [values[0] for _depth, _name, values in window.rows()] == ["✔ Ready"] * 4
    assert window.rows()[0][2][3] == "stored artifact from https://***@git.example.com/acme/fleet"
    assert "tok3n" not in window.detail_text()
    assert window.detail_text().startswith("GitRepository flux-system/flux-system: Ready")  # still the user's pick
    window.close()


def test_on_several_clusters_each_has_a_tab_with_its_own_tree_and_the_failed_one_comes_first(
    root: tkinter.Tk,
) -> None:
    running = on_clusters(dev=snapshot(SessionState.RECONCILING), prod=failed_snapshot())
    window = DetailsWindow(root, running, on_closed=lambda _id: None)
    root.update()
    assert window.top.title() == "Flux Push Monitor — main@1a2b3c4"
    assert window.tab_texts() == ["◎ dev", "✗ prod"]
    assert window.shown_context() == "prod"  # the cluster that failed, at once
    assert window.detail_text().startswith("Kustomization flux-system/apps: Failed (BuildFailed)")
    assert window.panel("prod").heading() == "✗ prod: failed: Kustomization/apps BuildFailed"
    assert [values[0] for _depth, _name, values in window.rows("dev")] == [
        "✔ Ready",
        "► Progressing",
        "◎ Pending",
        "◎ Pending",
    ]
    assert window.outcome_text() == "✗ failed on prod: Kustomization/apps BuildFailed · dev progressing"

    window.show_context("dev")  # the user looks at dev: it stays in front while the push goes on
    window.update(on_clusters(dev=snapshot(), prod=failed_snapshot()))
    root.update()
    assert window.shown_context() == "dev"
    assert window.tab_texts() == ["✔ dev", "✗ prod"]
    assert [values[0] for _depth, _name, values in window.rows("dev")] == ["✔ Ready"] * 4
    assert window.outcome_text() == "✗ failed on prod: Kustomization/apps BuildFailed · deployed to dev"

    window.update(push_of(failed_snapshot()))  # followed on one cluster again (the tray's contexts changed)
    root.update()
    assert window.tab_texts() == []
    assert window.detail_text().startswith("Kustomization flux-system/apps: Failed (BuildFailed)")
    window.close()


def test_a_hostile_context_name_shows_without_control_characters_in_its_tab(root: tkinter.Tk) -> None:
    push = on_clusters(**{"dev": snapshot(), "prod\x1b[2J\n\u202eevil": failed_snapshot()})
    window = DetailsWindow(root, push, on_closed=lambda _id: None)
    root.update()
    shown = [*window.tab_texts(), window.outcome_text(), *(p.heading() for p in window.panels.values())]
    assert not any(re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e]", text) for text in shown), shown
    window.close()
