"""Hostile text on a person's screen: git's and the cluster's strings reach a terminal, a notification and the
details window with their control characters replaced, and `--json` keeps them, escaped. A malformed URL in a
failure message neither crashes the notification nor leaks the credentials in it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from fluxmon.core.objects import ObjectRef, parse_flux_object
from fluxmon.core.overview import notification_for, overview
from fluxmon.core.render import json_lines
from fluxmon.core.session import SessionState, evaluate
from fluxmon.core.terminal import progress_lines, screen_rows, tree
from fluxmon.core.text import display_line, display_text, display_width, json_text
from fluxmon.core.verdict import Phase, Verdict
from fluxmon.tray.menu import build_menu, outline
from fluxmon.tray.notify import DbusNotifier
from harness.desktop import Desktop, wait_until
from harness.snapshots import APPS, failed_snapshot, push_of
from tests.flux_bodies import condition, git_repository, helm_release, kustomization, ready
from tests.test_sessions import NEW, SPEC, SYNCED, objects

if TYPE_CHECKING:
    import tkinter

HOSTILE = "fix \x1b[2J\x1b]0;owned\x07 \x9b31m C1 \x85 nel\rover \x00 nul \x7f del \u202eevil"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")
BAD_URL_MESSAGE = "failed to checkout https://bot:s3cret@[oops/x.git: Invalid IPv6 URL"


def test_every_control_character_is_replaced_for_display() -> None:
    shown = display_text(HOSTILE + "\nsecond line\tcolumn")
    assert not RAW_CONTROLS.search(shown)
    assert shown.endswith("\nsecond line column")  # newlines kept where a block of text is shown
    assert "\n" not in display_line("a\nb\r\nc")
    assert display_line("a\nb") == "a b"


def test_json_keeps_the_text_exact_and_escapes_what_ensure_ascii_false_leaves_raw() -> None:
    assert "\x9b" in json.dumps(HOSTILE, ensure_ascii=False)  # why json_text exists: C1 stays raw there
    encoded = json_text({"message": HOSTILE})
    assert not RAW_CONTROLS.search(encoded)
    assert json.loads(encoded) == {"message": HOSTILE}


def test_assess_json_lines_escape_c1() -> None:
    obj = parse_flux_object(kustomization(f"apps{HOSTILE}"))
    line = json_lines([(obj, Verdict(phase=Phase.FAILED, reason="R", message=HOSTILE))])
    assert not RAW_CONTROLS.search(line)
    assert json.loads(line)["message"] == HOSTILE
    assert json.loads(line)["name"] == f"apps{HOSTILE}"


def test_watch_counts_wrapped_rows_not_newlines() -> None:
    assert screen_rows("short\n" + "x" * 100 + "\n", 40) == 1 + 3
    assert screen_rows("\033[31m" + "y" * 40 + "\033[0m\n", 40) == 1  # colour codes take no room
    assert screen_rows("界" * 30 + "\n", 40) == 2  # wide characters take two columns
    assert display_width("界a") == 3


def test_a_malformed_url_in_a_failure_message_still_gives_a_redacted_notification() -> None:
    failed = failed_snapshot()
    resources = tuple(replace(r, message=BAD_URL_MESSAGE, events=()) if r.ref == APPS else r for r in failed.resources)
    notice = notification_for(
        push_of(replace(failed, resources=resources, message=BAD_URL_MESSAGE)), sent=set(), now=datetime.now()
    )
    assert notice is not None
    assert "s3cret" not in notice.title + notice.body
    assert "https://***@[oops/x.git" in notice.body


@pytest.fixture
def on_the_desktop(desktop: Desktop, monkeypatch: pytest.MonkeyPatch) -> Desktop:
    for key in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, desktop.env[key])
    return desktop


def test_a_notification_carries_no_raw_control_characters(on_the_desktop: Desktop) -> None:
    failed = failed_snapshot(subject=HOSTILE)
    resources = tuple(
        replace(r, message=f"{HOSTILE} {BAD_URL_MESSAGE}", events=()) if r.ref == APPS else r for r in failed.resources
    )
    notice = notification_for(push_of(replace(failed, resources=resources)), sent=set(), now=datetime.now())
    assert notice is not None
    notifier = DbusNotifier(on_details=lambda _id: None)
    with on_the_desktop.notification_daemon() as dunst:
        notifier.start()
        try:
            notifier.send(notice)
            wait_until(lambda: dunst.displayed() == 1, "the notification on screen")
        finally:
            notifier.stop()
        dunst.close_all()
        (entry,) = wait_until(dunst.history, "the notification in dunst's history")
    assert not RAW_CONTROLS.search(entry["summary"] + entry["body"])
    assert "s3cret" not in entry["body"]
    assert "owned" in entry["body"]  # the text is still there, only its control characters are not


def test_the_details_window_shows_no_raw_control_characters(root: tkinter.Tk) -> None:
    from fluxmon.tray.details import DetailsWindow

    failed = failed_snapshot(subject=HOSTILE, branch=f"main{HOSTILE}")
    resources = tuple(
        replace(r, message=f"{HOSTILE}\n{BAD_URL_MESSAGE}", reason=f"Build{HOSTILE}", events=()) if r.ref == APPS else r
        for r in failed.resources
    )
    window = DetailsWindow(root, push_of(replace(failed, resources=resources)), on_closed=lambda _id: None)
    try:
        window.select(APPS)
        root.update()
        shown = [window.top.title(), window.detail_text(), *(str(row) for row in window.rows())]
        assert not any(RAW_CONTROLS.search(text) for text in shown), shown
        assert "s3cret" not in window.detail_text()
        assert "owned" in window.detail_text()
    finally:
        window.close()


def fleet_world(*, broken: bool) -> dict[ObjectRef, Any]:
    """flux-system applies infrastructure and apps (its inventory); apps dependsOn infrastructure and applies
    podinfo. With `broken`, apps failed its build at the pushed commit."""
    apps_status = (
        {"attempted": NEW, "conditions": [condition("Ready", "False", "BuildFailed", BUILD_ERROR)]}
        if broken
        else {"applied": NEW, "conditions": ready(NEW)}
    )
    return objects(
        git_repository(revision=NEW),
        kustomization(
            "flux-system",
            applied=NEW,
            conditions=ready(NEW),
            inventory=(
                "flux-system_infrastructure_kustomize.toolkit.fluxcd.io_Kustomization",
                "flux-system_apps_kustomize.toolkit.fluxcd.io_Kustomization",
            ),
        ),
        kustomization("infrastructure", applied=NEW, conditions=ready(NEW)),
        kustomization(
            "apps",
            depends_on=("infrastructure",),
            inventory=("apps_podinfo_helm.toolkit.fluxcd.io_HelmRelease",),
            **apps_status,  # type: ignore[arg-type]
        ),
        helm_release(
            "podinfo",
            chart_version="6.0.3",
            conditions=[condition("Ready", "True", "UpgradeSucceeded", "ok")],
            labels={"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
        ),
    )


BUILD_ERROR = "kustomize build failed: yaml: line 10: mapping values are not allowed here"


def test_watch_nests_sources_kustomizations_and_the_releases_they_apply() -> None:
    drawn = tree(evaluate(SPEC, fleet_world(broken=False), SYNCED, now=1002.0)).splitlines()
    rows = [line for line in drawn if "─ " in line]
    assert [row.split("─ ")[0] + row.split("─ ")[1].split()[1] for row in rows] == [
        "└GitRepository/fleet",
        "   ├Kustomization/apps",
        "   │  └HelmRelease/podinfo",
        "   ├Kustomization/flux-system",
        "   └Kustomization/infrastructure",
    ]
    relations = [line.strip(" │") for line in drawn if "applied by" in line or "depends on" in line]
    # A parent is "applied by", never a dependency; "depends on" is spec.dependsOn alone.
    assert relations == ["applied by flux-system · depends on infrastructure (Ready)", "applied by flux-system"]
    assert "depends on flux-system" not in "\n".join(drawn)


def test_a_failure_is_printed_once() -> None:
    failed = evaluate(SPEC, fleet_world(broken=True), SYNCED, now=1002.0)
    assert failed.state is SessionState.FAILED
    drawn = tree(failed)
    assert drawn.count(BUILD_ERROR) == 1  # in the failed row
    assert "✗ Kustomization flux-system/apps failed: BuildFailed, as shown above" in drawn
    lines = progress_lines(None, failed)
    assert sum(BUILD_ERROR in line for line in lines) == 1  # the final line, which `wait` ends with
    assert lines[-1].startswith("✗ Kustomization flux-system/apps failed: BuildFailed: kustomize build failed")


def test_the_tray_s_tooltip_and_menu_carry_no_raw_control_characters() -> None:
    # The branch name is git's text and the reason the cluster's: both reach the tray host as they are.
    hostile = failed_snapshot(branch=f"main{HOSTILE}")
    hostile = replace(
        hostile,
        resources=tuple(replace(r, reason=f"BuildFailed{HOSTILE}") if r.ref == APPS else r for r in hostile.resources),
    )
    view = overview([push_of(hostile)], cluster_problems={"": f"cannot reach {HOSTILE}"})
    menu = "\n".join(
        outline(build_menu(summary=view.summary, recent=[push_of(hostile)], paused_until=None, can_reconcile=True))
    )
    for shown in (view.tooltip, view.summary, menu):
        assert not RAW_CONTROLS.search(shown.replace("\n", "")), repr(shown)
    assert "main" in view.summary
