"""Both notification paths against a real server (dunst) on the test desktop's private bus, in this process."""

from __future__ import annotations

import logging
import threading

import pytest

from fluxmon.compose import notifier_kind
from fluxmon.core.errors import InputError
from fluxmon.core.overview import Notification, Urgency
from fluxmon.core.session import SessionState
from fluxmon.tray.notify import DbusNotifier, NoNotifier, PlyerNotifier, make_notifier
from harness.desktop import Desktop, wait_until

FAILURE = Notification(
    session_id="s1",
    outcome=SessionState.FAILED,
    title="✗ apps failed — main@1a2b3c4",
    body="Kustomization/apps: BuildFailed\nnot allowed &lt;here&gt; &amp; there",
    urgency=Urgency.CRITICAL,
)


@pytest.fixture
def on_the_desktop(desktop: Desktop, monkeypatch: pytest.MonkeyPatch) -> Desktop:
    for key in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, desktop.env[key])
    return desktop


def test_the_dbus_path_delivers_and_a_click_reaches_on_details(on_the_desktop: Desktop) -> None:
    clicked = threading.Event()
    shown: list[str] = []

    def on_details(session_id: str) -> None:
        shown.append(session_id)
        clicked.set()

    notifier = DbusNotifier(on_details=on_details)
    with on_the_desktop.notification_daemon() as dunst:
        notifier.start()
        try:
            notifier.send(FAILURE)
            wait_until(lambda: dunst.displayed() == 1, "the notification on screen")
            dunst.default_action()
            assert clicked.wait(10)
        finally:
            notifier.stop()
        dunst.close_all()
        (entry,) = wait_until(dunst.history, "the clicked notification in dunst's history")
    assert shown == ["s1"]
    assert entry["summary"] == FAILURE.title
    assert entry["body"] == FAILURE.body  # sent escaped; dunst renders the markup back to the plain text
    assert notifier.sent == [FAILURE]


def test_plyer_is_the_portable_path_and_reaches_the_same_server(on_the_desktop: Desktop) -> None:
    notifier = PlyerNotifier()
    with on_the_desktop.notification_daemon() as dunst:
        notifier.send(FAILURE)  # plyer runs notify-send here: no dbus-python in the venv
        wait_until(lambda: dunst.displayed() == 1, "plyer's notification on screen")
        dunst.close_all()
        wait_until(lambda: dunst.history(), "the notification in dunst's history")
        (entry,) = dunst.history()
    assert entry["summary"] == FAILURE.title
    assert notifier.sent == [FAILURE]


def test_no_notification_server_is_logged_once(on_the_desktop: Desktop, caplog: pytest.LogCaptureFixture) -> None:
    notifier = DbusNotifier(on_details=lambda _session_id: None)
    notifier.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fluxmon.notify"):
            for _ in range(3):
                notifier.send(FAILURE)
            notifier.stop()  # waits for every send to have been tried
    finally:
        notifier.stop()
    assert len(caplog.records) == 1
    assert "carrying on without notifications" in caplog.records[0].getMessage()
    assert notifier.sent == []


def test_the_notifier_is_chosen_by_platform_and_setting() -> None:
    """The composition root reads FLUXMON_NOTIFIER and asks for that kind; tray/notify.py reads no environment."""
    assert isinstance(make_notifier(notifier_kind({"FLUXMON_NOTIFIER": "plyer"}), on_details=print), PlyerNotifier)
    assert isinstance(make_notifier(notifier_kind({"FLUXMON_NOTIFIER": "none"}), on_details=print), NoNotifier)
    assert isinstance(make_notifier(notifier_kind({}), on_details=print), DbusNotifier)  # Linux with desktop-notifier


def test_an_unknown_notifier_setting_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="FLUXMON_NOTIFIER='growl': expected one of dbus, plyer, none"):
        notifier_kind({"FLUXMON_NOTIFIER": "growl"})


def test_no_session_bus_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    notifier = DbusNotifier(on_details=lambda _session_id: None)
    notifier.start()
    with caplog.at_level(logging.WARNING, logger="fluxmon.notify"):
        notifier.send(FAILURE)
        notifier.send(FAILURE)
        notifier.stop()
    assert [record.getMessage() for record in caplog.records] == [
        "no notification server answered on the D-Bus session bus; carrying on without notifications"
    ]
