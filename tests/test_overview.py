"""What the desktop shows, decided without one: tray state, tooltip, menu and notification policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fluxmon.core.marks import TrayState
from fluxmon.core.overview import (
    Notification,
    Urgency,
    failures_fixed_by,
    notification_for,
    overview,
    pause_until,
    shorten,
)
from fluxmon.core.session import SessionState
from fluxmon.core.store import SessionStore
from fluxmon.tray import autostart
from fluxmon.tray.icon import TrayUnavailable, choose_backend
from fluxmon.tray.menu import Action, MenuAction, build_menu, outline
from harness.snapshots import APPS, PODINFO, failed_snapshot, snapshot

NOW = datetime(2026, 11, 25, 10, 0, 0)


def test_the_worst_state_wins_and_the_tooltip_counts_the_sessions() -> None:
    deployed = snapshot(id="a")
    failing = failed_snapshot(id="b", branch="staging")
    running = snapshot(SessionState.RECONCILING, id="c", branch="dev")
    view = overview([deployed, failing, running])
    assert view.state is TrayState.FAILED
    first_line, *lines = view.tooltip.splitlines()
    assert first_line == "Flux Push Monitor: failed (1 deployed, 1 failed, 1 deploying of 3 sessions)"
    assert any("staging@1a2b3c4 failed: Kustomization/apps BuildFailed" in line for line in lines)
    assert overview([deployed, running]).state is TrayState.DEPLOYING
    assert overview([]).state is TrayState.IDLE


def test_a_newer_push_to_the_same_branch_replaces_the_older_outcome() -> None:
    old_failure = failed_snapshot(id="old", started_at=1000.0)
    fixed = snapshot(id="new", started_at=2000.0)
    view = overview([fixed, old_failure])
    assert view.state is TrayState.DEPLOYED
    assert view.summary.startswith("✔ main@1a2b3c4 succeeded")


def test_superseded_and_not_deployed_sessions_leave_the_icon_alone() -> None:
    for state in (SessionState.SUPERSEDED, SessionState.CANCELLED, SessionState.NOT_DEPLOYED):
        assert overview([snapshot(state)]).state is TrayState.IDLE


def test_timed_out_is_attention_and_an_unreachable_cluster_shows() -> None:
    assert overview([snapshot(SessionState.TIMED_OUT)]).state is TrayState.ATTENTION
    view = overview([snapshot()], cluster_problem="cannot reach https://ada:s3cret@k8s.example.com:6443")
    assert view.state is TrayState.UNREACHABLE
    assert "s3cret" not in view.tooltip
    assert "https://***@k8s.example.com:6443" in view.tooltip


def test_paused_shows_unless_something_failed() -> None:
    until = NOW + timedelta(hours=1)
    assert overview([snapshot()], paused_until=until).state is TrayState.PAUSED
    assert overview([failed_snapshot()], paused_until=until).state is TrayState.FAILED
    assert "notifications paused until 11:00" in overview([], paused_until=until).tooltip


def test_a_failure_is_notified_once_critically_escaped_and_redacted() -> None:
    sent: set[tuple[str, str]] = set()
    failure = failed_snapshot(subject="fix https://bot:tok3n@git.example.com/x")
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
    assert notification_for(snapshot(SessionState.RECONCILING), sent=sent, now=NOW) is None
    assert notification_for(snapshot(SessionState.SUPERSEDED), sent=sent, now=NOW) is None
    success = notification_for(snapshot(), sent=sent, now=NOW)
    assert success is not None
    assert (success.title, success.urgency) == ("✔ fleet deployed — main@1a2b3c4", Urgency.NORMAL)
    timed_out = notification_for(snapshot(SessionState.TIMED_OUT, id="t"), sent=sent, now=NOW)
    assert timed_out is not None
    assert timed_out.title == "⚠ fleet timed out — main@1a2b3c4"
    quiet = notification_for(snapshot(id="q"), sent=sent, now=NOW, outcomes=("failed",))
    assert quiet is None  # config notify_on


def test_pause_suppresses_and_resuming_does_not_replay() -> None:
    sent: set[tuple[str, str]] = set()
    until = pause_until("hour", NOW)
    assert until == NOW + timedelta(hours=1)
    assert notification_for(failed_snapshot(), sent=sent, paused_until=until, now=NOW) is None
    assert notification_for(failed_snapshot(), sent=sent, paused_until=None, now=NOW) is None
    assert pause_until("tomorrow", NOW) == datetime(2026, 11, 26, 8, 0)
    assert pause_until("resume", NOW) is None


def test_the_menu_has_every_item_and_recent_sessions_open_their_details() -> None:
    recent = [failed_snapshot(id=f"s{n}", started_at=float(n)) for n in range(12)]
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
    store.finish(original)
    (restored,) = store.recent()
    assert restored.failed == APPS
    assert [r.ref for r in restored.resources] == [r.ref for r in original.resources]
    apps = next(r for r in restored.resources if r.ref == APPS)
    assert "mapping values are not allowed" in apps.error  # the event's text survives as the message
    assert next(r for r in restored.resources if r.ref == PODINFO).parent == APPS
    assert notification_for(restored, sent=set(), now=NOW) == notification_for(
        replace(original, resources=restored.resources), sent=set(), now=NOW
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
    first = failed_snapshot(id="f1", started_at=100.0)
    second = failed_snapshot(id="f2", started_at=200.0)
    elsewhere = failed_snapshot(id="other", branch="staging", started_at=250.0)
    fix = snapshot(id="fix", started_at=300.0)
    fixed = failures_fixed_by(fix, [first, second, elsewhere, fix])
    assert [s.id for s in fixed] == ["f2", "f1"]
    notification = notification_for(fix, sent=set(), now=NOW, fixes=fixed)
    assert notification is not None
    assert notification.title == "✔ fleet fixed — main@1a2b3c4"
    assert "fixes the failure of 1a2b3c4 (Kustomization/apps BuildFailed)" in notification.body
    assert notification.closes == ("f2", "f1")
    earlier_success = snapshot(id="ok", started_at=150.0)
    assert [s.id for s in failures_fixed_by(fix, [first, earlier_success, second])] == ["f2"]
    assert failures_fixed_by(failed_snapshot(id="again", started_at=400.0), [first, fix]) == ()


def test_the_store_keeps_an_outcome_untold_until_it_went_out(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.finish(failed_snapshot(id="a", started_at=1.0))
    store.finish(snapshot(id="b", started_at=2.0))
    assert [s.id for s in store.untold()] == ["a", "b"]  # oldest first
    store.told("a")
    assert [s.id for s in SessionStore(tmp_path).untold()] == ["b"]  # also for the next start


def test_a_cut_error_ends_with_an_ellipsis_at_a_word_and_leaks_no_credential() -> None:
    error = "kustomize build failed: " + "word " * 50 + "fetching https://bot:tok3nvalue@git.example.com/acme/x.git"
    failure = failed_snapshot()
    apps = replace(next(r for r in failure.resources if r.ref == APPS), message=error, events=())
    failure = replace(failure, resources=tuple(apps if r.ref == APPS else r for r in failure.resources))
    notification = notification_for(failure, sent=set(), now=NOW)
    assert notification is not None
    cut = notification.body.splitlines()[1]
    assert cut.endswith("…")
    assert cut.removesuffix("…").rstrip() in error  # whole words of the error, then the ellipsis
    assert error.startswith(cut.removesuffix("…").rstrip() + " ")  # cut between words
    assert "tok3" not in notification.body
    assert shorten("short enough", 20) == "short enough"
    assert shorten("x" * 30, 10) == "x" * 9 + "…"  # one long token: cut, but never without saying so
