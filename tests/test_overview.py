"""What the desktop shows, decided without one: tray state, tooltip, menu and notification policy."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fluxmon.core.health import ClusterHealth
from fluxmon.core.marks import TrayState
from fluxmon.core.overview import (
    Notification,
    Urgency,
    cluster_problems,
    failures_fixed_by,
    notification_for,
    overview,
    pause_until,
    session_line,
    shorten,
)
from fluxmon.core.session import SessionState
from fluxmon.core.store import SessionStore
from fluxmon.core.verdict import Phase
from fluxmon.tray import autostart
from fluxmon.tray.icon import TrayUnavailable, choose_backend
from fluxmon.tray.menu import Action, MenuAction, build_menu, outline
from harness.snapshots import (
    APPS,
    PODINFO,
    failed_push,
    failed_snapshot,
    on_clusters,
    push_of,
    pushed,
    resource,
    snapshot,
)

NOW = datetime(2026, 11, 25, 10, 0, 0)


def test_the_worst_state_wins_and_the_tooltip_counts_the_sessions() -> None:
    deployed = pushed(id="a")
    failing = failed_push(id="b", branch="staging")
    running = pushed(SessionState.RECONCILING, id="c", branch="dev")
    view = overview([deployed, failing, running])
    assert view.state is TrayState.FAILED
    first_line, *lines = view.tooltip.splitlines()
    assert first_line == "Flux Push Monitor: failed (1 deployed, 1 failed, 1 deploying of 3 sessions)"
    assert any("staging@1a2b3c4 failed: Kustomization/apps BuildFailed" in line for line in lines)
    assert overview([deployed, running]).state is TrayState.DEPLOYING
    assert overview([]).state is TrayState.IDLE


def test_a_newer_push_to_the_same_branch_replaces_the_older_outcome() -> None:
    old_failure = failed_push(id="old", started_at=1000.0)
    fixed = pushed(id="new", started_at=2000.0)
    view = overview([fixed, old_failure])
    assert view.state is TrayState.DEPLOYED
    assert view.summary.startswith("✔ main@1a2b3c4 succeeded")


def test_superseded_and_not_deployed_sessions_leave_the_icon_alone() -> None:
    for state in (SessionState.SUPERSEDED, SessionState.CANCELLED, SessionState.NOT_DEPLOYED):
        assert overview([pushed(state)]).state is TrayState.IDLE


def test_timed_out_is_attention_and_an_unreachable_cluster_shows() -> None:
    assert overview([pushed(SessionState.TIMED_OUT)]).state is TrayState.ATTENTION
    view = overview([pushed()], cluster_problems={"": "cannot reach https://ada:s3cret@k8s.example.com:6443"})
    assert view.state is TrayState.UNREACHABLE
    assert "s3cret" not in view.tooltip
    assert "https://***@k8s.example.com:6443" in view.tooltip


def test_paused_shows_unless_something_failed() -> None:
    until = NOW + timedelta(hours=1)
    assert overview([pushed()], paused_until=until).state is TrayState.PAUSED
    assert overview([failed_push()], paused_until=until).state is TrayState.FAILED
    assert "notifications paused until 11:00" in overview([], paused_until=until).tooltip


def test_a_failure_is_notified_once_critically_escaped_and_redacted() -> None:
    sent: set[tuple[str, str]] = set()
    failure = failed_push(subject="fix https://bot:tok3n@git.example.com/x")
    notification = notification_for(failure, sent=sent, now=NOW)
    assert notification == Notification(
        session_id="s1",
        outcome=SessionState.FAILED,
        title="✗ apps failed — main@1a2b3c4",
        body=(
            "Kustomization/apps: BuildFailed\n"
            "kustomize build failed: yaml: line 10: mapping values are not allowed &lt;here&gt; &amp; there\n"
            "“fix https://***@git.example.com/x”"
        ),
        urgency=Urgency.CRITICAL,
    )
    assert notification_for(failure, sent=sent, now=NOW) is None  # never twice per outcome


def test_only_final_outcomes_are_notified_and_success_is_normal() -> None:
    sent: set[tuple[str, str]] = set()
    assert notification_for(pushed(SessionState.RECONCILING), sent=sent, now=NOW) is None
    assert notification_for(pushed(SessionState.SUPERSEDED), sent=sent, now=NOW) is None
    success = notification_for(pushed(), sent=sent, now=NOW)
    assert success is not None
    assert (success.title, success.urgency) == ("✔ fleet deployed — main@1a2b3c4", Urgency.NORMAL)
    timed_out = notification_for(pushed(SessionState.TIMED_OUT, id="t"), sent=sent, now=NOW)
    assert timed_out is not None
    assert timed_out.title == "⚠ fleet timed out — main@1a2b3c4"
    quiet = notification_for(pushed(id="q"), sent=sent, now=NOW, outcomes=("failed",))
    assert quiet is None  # config notify_on


def test_pause_suppresses_and_resuming_does_not_replay() -> None:
    sent: set[tuple[str, str]] = set()
    until = pause_until("hour", NOW)
    assert until == NOW + timedelta(hours=1)
    assert notification_for(failed_push(), sent=sent, paused_until=until, now=NOW) is None
    assert notification_for(failed_push(), sent=sent, paused_until=None, now=NOW) is None
    assert pause_until("tomorrow", NOW) == datetime(2026, 11, 26, 8, 0)
    assert pause_until("resume", NOW) is None


def test_the_menu_has_every_item_and_recent_sessions_open_their_details() -> None:
    recent = [failed_push(id=f"s{n}", started_at=float(n)) for n in range(12)]
    entries = build_menu(summary="✗ main@1a2b3c4 failed", recent=recent, paused_until=None, can_reconcile=True)
    texts = [entry.text for entry in entries]
    assert texts == [
        "✗ main@1a2b3c4 failed",
        "Show details…",
        "Recent sessions",
        "-",
        "Reconcile now",
        "Pause notifications",
        "Open config",
        "Report…",
        "-",
        "Quit",
    ]
    sessions = entries[2].submenu
    assert len(sessions) == 10
    assert sessions[0].action == Action(MenuAction.DETAILS, "s0")
    assert entries[1].default
    assert entries[1].action == Action(MenuAction.DETAILS, "s0")
    pause = [entry.text for entry in entries[5].submenu]
    assert pause == ["Not paused", "For 1 hour", "Until tomorrow", "Resume"]
    assert "  Resume (disabled)" in outline(entries)


def test_an_empty_menu_says_so_and_cannot_reconcile() -> None:
    entries = build_menu(summary="No pushes yet", recent=[], paused_until=NOW, can_reconcile=False)
    lines = outline(entries)
    assert "No pushes yet (disabled)" in lines
    assert "  No sessions yet (disabled)" in lines
    assert "Reconcile now (disabled)" in lines
    assert "  Paused until Wed 10:00 (disabled)" in lines


def test_history_comes_back_as_snapshots_for_the_menu(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    original = failed_snapshot()
    store.finish(push_of(original))
    (restored,) = store.recent()
    assert restored.failed == APPS
    assert [r.ref for r in restored.first.resources] == [r.ref for r in original.resources]
    apps = next(r for r in restored.first.resources if r.ref == APPS)
    assert "mapping values are not allowed" in apps.error  # the event's text survives as the message
    assert next(r for r in restored.first.resources if r.ref == PODINFO).parent == APPS
    assert notification_for(restored, sent=set(), now=NOW) == notification_for(
        push_of(replace(original, resources=restored.first.resources)), sent=set(), now=NOW
    )


def test_no_display_and_the_menuless_backend_are_refused_with_a_way_forward() -> None:
    with pytest.raises(TrayUnavailable, match=r"no display .* `fluxmon watch`"):
        choose_backend({})
    with pytest.raises(TrayUnavailable, match="PYSTRAY_BACKEND=xorg is not supported"):
        choose_backend({"DISPLAY": ":9", "PYSTRAY_BACKEND": "xorg"})


def test_autostart_writes_and_removes_an_xdg_entry(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    path = autostart.enable(environ)
    assert path == tmp_path / "autostart" / "fluxmon.desktop"
    text = path.read_text()
    assert "[Desktop Entry]" in text
    assert "-m fluxmon tray" in text
    assert "@" not in text
    icon = next(line for line in text.splitlines() if line.startswith("Icon="))
    assert Path(icon.removeprefix("Icon=")).is_file()
    assert autostart.disable(environ) == path
    assert not path.exists()
    assert autostart.disable(environ) is None


def test_a_success_after_failures_on_its_branch_says_fixed_and_closes_them() -> None:
    first = failed_push(id="f1", started_at=100.0)
    second = failed_push(id="f2", started_at=200.0)
    elsewhere = failed_push(id="other", branch="staging", started_at=250.0)
    fix = pushed(id="fix", started_at=300.0)
    fixed = failures_fixed_by(fix, [first, second, elsewhere, fix])
    assert [s.id for s in fixed] == ["f2", "f1"]
    notification = notification_for(fix, sent=set(), now=NOW, fixes=fixed)
    assert notification is not None
    assert notification.title == "✔ fleet fixed — main@1a2b3c4"
    assert "fixes the failure of 1a2b3c4 (Kustomization/apps BuildFailed)" in notification.body
    assert notification.closes == ("f2", "f1")
    earlier_success = pushed(id="ok", started_at=150.0)
    assert [s.id for s in failures_fixed_by(fix, [first, earlier_success, second])] == ["f2"]
    assert failures_fixed_by(failed_push(id="again", started_at=400.0), [first, fix]) == ()


def test_the_store_keeps_an_outcome_untold_until_it_went_out(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    for push in (failed_push(id="a", started_at=1.0), pushed(id="b", started_at=2.0)):
        store.untell(push.id)  # as the engine does when the outcome is decided
        store.finish(push)
    assert [s.id for s in store.untold()] == ["a", "b"]  # oldest first
    store.told("a")
    assert [s.id for s in SessionStore(tmp_path).untold()] == ["b"]  # also for the next start


def test_a_cut_error_ends_with_an_ellipsis_at_a_word_and_leaks_no_credential() -> None:
    error = "kustomize build failed: " + "word " * 50 + "fetching https://bot:tok3nvalue@git.example.com/acme/x.git"
    failure = failed_snapshot()
    apps = replace(next(r for r in failure.resources if r.ref == APPS), message=error, events=())
    failure = replace(failure, resources=tuple(apps if r.ref == APPS else r for r in failure.resources))
    notification = notification_for(push_of(failure), sent=set(), now=NOW)
    assert notification is not None
    cut = notification.body.splitlines()[1]
    assert cut.endswith("…")
    assert cut.removesuffix("…").rstrip() in error  # whole words of the error, then the ellipsis
    assert error.startswith(cut.removesuffix("…").rstrip() + " ")  # cut between words
    assert "tok3" not in notification.body
    assert shorten("short enough", 20) == "short enough"
    assert shorten("x" * 30, 10) == "x" * 9 + "…"  # one long token: cut, but never without saying so


def test_a_release_retrying_its_upgrade_says_so_in_the_tooltip_and_the_menu() -> None:
    # Issue 10: "upgrade failed, retry 1 of 3: …" is seen at once in the tree, the tooltip and the details window,
    # though the push is still deploying. The tooltip said only "reconciling (3/4 ready)".
    error = "Helm upgrade failed for release apps/podinfo with chart podinfo@6.0.3: " + "context deadline " * 10
    retrying = resource(
        PODINFO,
        Phase.PROGRESSING,
        parent=APPS,
        reason="UpgradeFailed",
        message=f"upgrade failed, retry 1 of 3: {error}",
    )
    session = snapshot(SessionState.RECONCILING)
    session = replace(session, resources=(*session.resources[:3], replace(retrying, retrying=True)))
    view = overview([push_of(session)])
    assert view.state is TrayState.DEPLOYING
    (line,) = view.tooltip.splitlines()[1:]
    assert "reconciling (1/4 ready) · HelmRelease/podinfo upgrade failed, retry 1 of 3: Helm upgrade failed" in line
    assert line.endswith("… (42s)")  # the error is cut, between words
    assert session_line(push_of(session)) in line
    # A release that is only progressing says nothing more.
    quiet = replace(session, resources=(*session.resources[:3], retrying))
    assert overview([push_of(quiet)]).tooltip.splitlines()[1].endswith("reconciling (1/4 ready) (42s)")


# --- one push on several clusters (issue 13) ---------------------------------------------------------------------


def test_on_several_clusters_the_worst_wins_and_the_tooltip_and_menu_say_where() -> None:
    on_the_way = on_clusters(dev=snapshot(), staging=snapshot(), prod=snapshot(SessionState.RECONCILING))
    view = overview([on_the_way])
    assert view.state is TrayState.DEPLOYING
    assert view.summary == "◎ main@1a2b3c4 deployed to dev, staging · prod progressing (42s)"
    assert "fleet ◎ main@1a2b3c4 deployed to dev, staging · prod progressing (42s)" in view.tooltip.splitlines()
    broken = on_clusters(dev=snapshot(), prod=failed_snapshot())
    view = overview([broken])
    assert view.state is TrayState.FAILED  # as soon as one cluster fails
    assert view.summary == "✗ main@1a2b3c4 failed on prod: Kustomization/apps BuildFailed · deployed to dev (42s)"
    everywhere = on_clusters(dev=snapshot(), prod=snapshot())
    assert overview([everywhere]).summary == "✔ main@1a2b3c4 deployed to dev, prod (42s)"
    elsewhere = on_clusters(dev=snapshot(), prod=snapshot(SessionState.NOT_DEPLOYED))
    assert overview([elsewhere]).state is TrayState.DEPLOYED  # a cluster that does not follow it is not counted
    assert overview([elsewhere]).summary == "✔ main@1a2b3c4 deployed to dev · prod not followed (42s)"


def test_on_several_clusters_a_notification_names_the_cluster_and_stays_one_per_outcome() -> None:
    sent: set[tuple[str, str]] = set()
    failed_on_prod = on_clusters(dev=snapshot(SessionState.RECONCILING), prod=failed_snapshot())
    notification = notification_for(failed_on_prod, sent=sent, now=NOW)
    assert notification is not None
    assert notification.title == "✗ apps failed on prod — main@1a2b3c4"
    assert notification.body.splitlines()[0] == "Kustomization/apps: BuildFailed"
    assert "dev progressing" in notification.body.splitlines()
    settled = on_clusters(dev=snapshot(), prod=failed_snapshot())  # dev deployed it later: still one failure
    assert settled.state is SessionState.FAILED
    assert notification_for(settled, sent=sent, now=NOW) is None
    deployed = notification_for(on_clusters(dev=snapshot(id="ok"), prod=snapshot(id="ok")), sent=sent, now=NOW)
    assert deployed is not None
    assert deployed.title == "✔ fleet deployed to dev, prod — main@1a2b3c4"
    assert deployed.body.startswith("deployed to dev, prod in 42s")
    late = on_clusters(dev=snapshot(id="late"), prod=snapshot(SessionState.TIMED_OUT, id="late"))
    timed_out = notification_for(late, sent=sent, now=NOW)
    assert timed_out is not None
    assert timed_out.title == "⚠ fleet timed out on prod — main@1a2b3c4"


def test_on_several_clusters_a_fix_says_where_it_fixed_the_failure() -> None:
    failure = on_clusters(dev=snapshot(id="f1", started_at=100.0), prod=failed_snapshot(id="f1", started_at=100.0))
    fix = on_clusters(dev=snapshot(id="fix", started_at=300.0), prod=snapshot(id="fix", started_at=300.0))
    fixes = failures_fixed_by(fix, [failure, fix])
    assert [push.id for push in fixes] == ["f1"]
    notification = notification_for(fix, sent=set(), now=NOW, fixes=fixes)
    assert notification is not None
    assert notification.title == "✔ fleet fixed on prod — main@1a2b3c4"
    assert "fixes the failure of 1a2b3c4 on prod (Kustomization/apps BuildFailed)" in notification.body
    assert notification.closes == ("f1",)


def test_a_cluster_in_trouble_is_named_when_there_are_several() -> None:
    unreachable = ClusterHealth(context="prod", problem="cannot reach https://ada:s3cret@prod.example.com")
    fine = ClusterHealth(context="dev")
    assert cluster_problems([unreachable, fine], several=False) == {"": unreachable.problem}
    problems = cluster_problems([unreachable, fine], several=True)
    assert problems == {"prod": unreachable.problem}
    view = overview([on_clusters(dev=snapshot(), prod=snapshot())], cluster_problems=problems)
    assert view.state is TrayState.UNREACHABLE
    assert "cluster prod: cannot reach https://***@prod.example.com" in view.tooltip.splitlines()
    one = overview([pushed()], cluster_problems=cluster_problems([unreachable], several=False))
    assert "cluster: cannot reach https://***@prod.example.com" in one.tooltip.splitlines()


HOSTILE_CONTEXT = "<b>prod</b>\x1b[2J\x07\n\u202eevil"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def test_a_hostile_context_name_is_shown_without_markup_or_control_characters() -> None:
    """A kubeconfig's context names are anyone's text too: they reach the tooltip, the menu and notifications."""
    push = on_clusters(**{"dev": failed_snapshot(), HOSTILE_CONTEXT: snapshot(SessionState.RECONCILING)})
    view = overview([push], cluster_problems={HOSTILE_CONTEXT: "cannot reach it"})
    menu = outline(build_menu(summary=view.summary, recent=[push], paused_until=None, can_reconcile=True))
    for shown in (view.tooltip, view.summary, *menu):
        assert not RAW_CONTROLS.search(shown.replace("\n", "")), repr(shown)
    assert len(view.tooltip.splitlines()) == 3  # the state, the push and the cluster: no line of the name's own
    notification = notification_for(push, sent=set(), now=NOW)
    assert notification is not None
    assert "&lt;b&gt;prod&lt;/b&gt;" in notification.body  # escaped: dunst renders markup in bodies
    assert "<b>" not in notification.body


def test_on_several_clusters_reconcile_now_offers_every_cluster_or_one() -> None:
    push = on_clusters(dev=snapshot(), prod=failed_snapshot())
    entries = build_menu(summary=session_line(push), recent=[push], paused_until=None, can_reconcile=True)
    reconcile = next(entry for entry in entries if entry.text == "Reconcile now")
    assert [(e.text, e.action) for e in reconcile.submenu] == [
        ("On every cluster", Action(MenuAction.RECONCILE, "s1")),
        ("On dev", Action(MenuAction.RECONCILE, "s1", "dev")),
        ("On prod", Action(MenuAction.RECONCILE, "s1", "prod")),
    ]
    one = build_menu(summary="-", recent=[pushed()], paused_until=None, can_reconcile=True)
    assert next(e for e in one if e.text == "Reconcile now").action == Action(MenuAction.RECONCILE, "s1")
