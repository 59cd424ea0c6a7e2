"""The tray hands outcomes on (#14): as a real process on the test desktop, a failed push reaches a signed webhook
on loopback, and the tray's own CCTray feed (`feed_listen`) shows it to BuildNotify's parser as a Failure labelled
with its short sha."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import textwrap
import urllib.request
from pathlib import Path

import pytest
from buildnotifylib.core.cctray import parse
from buildnotifylib.core.model import Status

from fluxmon.core.marks import TrayState
from harness.desktop import Desktop
from tests.fleet import BROKEN_YAML, Fleet
from tests.receiver import receiving
from tests.test_feed import Server
from tests.test_tray import StartTray, start_tray

__all__ = ["start_tray"]  # the fixture, used by name

SECRET = "tray-webhook-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_the_tray_signs_a_failure_to_the_webhook_and_serves_it_in_its_feed(
    desktop: Desktop, fleet: Fleet, start_tray: StartTray
) -> None:
    port = free_port()
    with receiving() as receiver:
        config = Path(fleet.env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            textwrap.dedent(
                f"""
                feed_listen = "127.0.0.1:{port}"
                [[webhook]]
                url = "{receiver.url}"
                secret_env = "FLUXMON_WEBHOOK_SECRET"
                on = ["failed"]
                """
            )
        )
        fleet.env["FLUXMON_WEBHOOK_SECRET"] = SECRET
        tray = start_tray()
        sha = fleet.commit_and_push(BROKEN_YAML, "break web")
        tray.wait_state(TrayState.FAILED)
        [request] = receiver.wait_for(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cctray.xml", timeout=10) as response:
            feed = response.read()
        assert tray.stop() == 0
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Signature"], expected)
    payload = json.loads(request.body)
    assert (payload["outcome"], payload["commit"]) == ("failed", sha)
    [project] = parse(feed, Server())
    assert (project.status, project.last_build_label) == (Status.FAILURE, sha[:7])
    assert SECRET not in "\n".join(tray.running.stderr)
