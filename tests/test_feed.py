"""The CCTray feed (#14 item 3), read by a real CCTray client's parser: BuildNotify's
`buildnotifylib.core.cctray.parse` (https://cctray.org/v1/ is the format), from the history the state folder keeps,
served over HTTP on loopback (with a token elsewhere), and from `fluxmon feed` as a real process."""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from buildnotifylib.core.cctray import parse
from buildnotifylib.core.model import Activity, Status

from fluxmon.core.config import Config
from fluxmon.core.errors import ConfigError
from fluxmon.core.feed import FeedServer, Following, feed_projects, render_cctray, start_feed, store_feed
from fluxmon.core.push import PushSnapshot, combine
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.store import SessionStore
from harness.running import Running
from harness.snapshots import COMMIT, failed_snapshot, snapshot

TOKEN = "feed-token-5d41402abc4b2a76"


@dataclass(frozen=True)
class Server:
    """What BuildNotify's parser asks of the server it polls (its FeedSource)."""

    url: str = "http://127.0.0.1:8765/cctray.xml"
    prefix: str | None = None
    timezone: str = "None"
    excluded_projects: tuple[str, ...] = field(default=())


def read(data: bytes) -> dict[str, Any]:
    return {project.name: project for project in parse(data, Server())}


def failed(**changes: object) -> PushSnapshot:
    return combine([failed_snapshot(**{"context": "kind-dev", **changes})])


def deployed(**changes: object) -> PushSnapshot:
    return combine([snapshot(SessionState.SUCCEEDED, **{"context": "kind-dev", **changes})])


def test_a_failed_push_shows_as_a_failure_labelled_with_its_short_sha(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.finish(deployed(id="older", commit="0" * 40, started_at=900.0, updated_at=950.0, ended_at=950.0))
    store.finish(failed())
    [project] = parse(store_feed(store), Server())
    assert project.name == "git.example.com/acme/fleet main"
    assert project.status is Status.FAILURE
    assert project.activity is Activity.SLEEPING
    assert project.last_build_label == COMMIT[:7]
    assert project.url == f"https://git.example.com/acme/fleet/commit/{COMMIT}"
    assert project.build_time == datetime.fromisoformat("1970-01-01T00:17:22+00:00")  # ended_at 1042, with a zone


def test_a_push_being_followed_is_building_and_keeps_its_last_outcome(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.finish(deployed())
    store.save_active(SessionSpec(id="next", remote_url="https://git.example.com/acme/fleet.git", branch="main",
                                  commit="f" * 40))  # fmt: skip
    store.save_active(SessionSpec(id="new", remote_url="git@git.example.com:acme/other.git", branch="dev",
                                  commit="e" * 40))  # fmt: skip
    projects = read(store_feed(store))
    fleet, other = projects["git.example.com/acme/fleet main"], projects["git.example.com/acme/other dev"]
    assert (fleet.activity, fleet.status, fleet.last_build_label) == (Activity.BUILDING, Status.SUCCESS, COMMIT[:7])
    assert (other.activity, other.status, other.last_build_label) == (Activity.BUILDING, Status.UNKNOWN, "eeeeeee")
    assert other.url == f"https://git.example.com/acme/other/commit/{'e' * 40}"


def test_one_project_per_cluster_when_there_are_several() -> None:
    push = combine([snapshot(SessionState.SUCCEEDED, context="dev"), failed_snapshot(context="prod")])
    timed_out = combine([snapshot(SessionState.TIMED_OUT, context="qa", branch="release")])
    xml = render_cctray(feed_projects([push, timed_out], [Following(
        remote=push.remote, branch="main", commit="f" * 40, started_at=2000.0, contexts=("dev", "prod"))]))  # fmt: skip
    projects = read(xml)
    assert {name: p.status for name, p in projects.items()} == {
        "git.example.com/acme/fleet main @ dev": Status.SUCCESS,
        "git.example.com/acme/fleet main @ prod": Status.FAILURE,
        "git.example.com/acme/fleet release": Status.FAILURE,  # BuildNotify reads Exception as a failure
    }
    assert b'lastBuildStatus="Exception"' in xml  # timed out: the cluster was slow or unreachable
    assert all(p.activity is Activity.BUILDING for n, p in projects.items() if " @ " in n)


def test_hostile_names_and_credentials_do_not_break_or_leak_into_the_feed() -> None:
    push = failed(
        branch='fix/"quotes"&<tags>\x1b[2J\x07',
        remote="https://x-access-token:ghp_s3cret@github.com/acme/fleet.git",
    )
    xml = render_cctray(feed_projects([push], []))
    [project] = parse(xml, Server())
    assert project.name == 'github.com/acme/fleet fix/"quotes"&<tags>[2J'
    assert b"ghp_s3cret" not in xml
    assert project.url == f"https://github.com/acme/fleet/commit/{COMMIT}"


def test_a_local_remote_has_no_web_page() -> None:
    [project] = feed_projects([failed(remote="/srv/git/fleet.git")], [])
    assert project.web_url == ""
    assert b"webUrl" not in render_cctray([project])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the loopback test server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_the_feed_is_served_over_http_and_read_by_buildnotify(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.finish(failed())
    server = FeedServer("127.0.0.1:0", lambda: store_feed(store))
    server.start()
    try:
        status, body = get(server.url)
        missing, _ = get(server.url.replace("/cctray.xml", "/nope"))
    finally:
        server.stop()
    assert (status, missing) == (200, 404)
    [project] = parse(body, Server())
    assert (project.status, project.last_build_label) == (Status.FAILURE, COMMIT[:7])


def test_with_a_token_clients_must_send_it(tmp_path: Path) -> None:
    server = FeedServer("127.0.0.1:0", lambda: render_cctray([]), token=TOKEN)
    server.start()
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    try:
        codes = [
            get(server.url)[0],
            get(server.url, {"Authorization": "Bearer wrong"})[0],
            get(server.url, {"Authorization": f"Bearer {TOKEN}"})[0],  # BuildNotify's bearer token
            get(server.url, {"Authorization": f"Basic {basic}"})[0],  # CCMenu's user and password
            get(f"{server.url}?token={TOKEN}")[0],
        ]
    finally:
        server.stop()
    assert codes == [401, 401, 200, 200, 200]


def test_listening_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="not a loopback address, so the feed needs a token"):
        FeedServer("0.0.0.0:8765", lambda: b"")
    FeedServer("0.0.0.0:8765", lambda: b"", token=TOKEN)


def test_the_tray_carries_on_without_a_feed_it_cannot_serve(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "fluxmon.feed")
    assert start_feed(Config(), tmp_path, {}) is None  # not asked for
    assert start_feed(Config(feed_listen="0.0.0.0:8765"), tmp_path, {}) is None
    assert start_feed(Config(feed_listen="127.0.0.1:8765", feed_token_env="NO_SUCH_TOKEN"), tmp_path, {}) is None
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "not serving the CCTray feed: feed_listen 0.0.0.0:8765: not a loopback address, so the feed needs a token: "
        "set feed_token_env or feed_token_file (--token-env), or listen on 127.0.0.1",
        "not serving the CCTray feed: feed_token_env NO_SUCH_TOKEN is not set; export it, or leave the feed on "
        "loopback",
    ]


def fluxmon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "fluxmon", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_fluxmon_feed_print_shows_the_history(tmp_path: Path) -> None:
    SessionStore(tmp_path / "state" / "fluxmon").finish(failed())
    result = fluxmon(tmp_path, "feed", "--print")
    assert result.returncode == 0, result.stderr
    [project] = parse(result.stdout.encode(), Server())
    assert (project.status, project.last_build_label) == (Status.FAILURE, COMMIT[:7])


@pytest.mark.parametrize(
    ("listen", "said"),
    [
        ("0.0.0.0:8765", "not a loopback address, so the feed needs a token"),
        ("127.0.0.1:http", "expected host:port such as 127.0.0.1:8765, got '127.0.0.1:http'"),
    ],
)
def test_fluxmon_feed_refuses_a_bad_listen_address_in_one_line(tmp_path: Path, listen: str, said: str) -> None:
    result = fluxmon(tmp_path, "feed", "--listen", listen)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert said in line


def test_fluxmon_feed_serves_until_interrupted(tmp_path: Path) -> None:
    SessionStore(tmp_path / "state" / "fluxmon").finish(failed())
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "FEED_TOKEN": TOKEN,
    }
    command = [sys.executable, "-m", "fluxmon", "feed", "--listen", "127.0.0.1:0", "--token-env", "FEED_TOKEN"]
    serving = Running(command, env=env)
    try:
        line = serving.expect(lambda name, text: name == "stdout" and "serving" in text, "the feed's address")
        url = line.split()[3]
        refused, _ = get(url)
        status, body = get(url, {"Authorization": f"Bearer {TOKEN}"})
        serving.process.send_signal(signal.SIGINT)
        assert serving.finish(timeout=30) == 0
    finally:
        serving.kill()
    assert (refused, status) == (401, 200)
    [project] = parse(body, Server())
    assert project.status is Status.FAILURE
    assert TOKEN not in "\n".join(serving.stderr + serving.stdout)
