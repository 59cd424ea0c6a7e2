"""Hostile session files through the real spool reader (a real watchdog observer): mistyped settings are rejected
with a reason and never left in claimed/, a clock in the future cannot pin the tray, and a thousand copies of one
push give one session and one notification."""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.overview import notification_for
from fluxmon.core.push import combine
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState, evaluate, spec_from_request
from fluxmon.core.spool import SpoolReader, ensure_private_dir, write_session
from harness.spoolrecords import record
from tests.fleet import Fleet
from tests.test_sessions import following
from tests.test_spool import DELIVERY_TIMEOUT_SECONDS

RAW_CONTROLS = "\x1b\x07\x9b\x00"


def drop(spool: Path, name: str, data: dict[str, Any] | str) -> Path:
    """Put a file into the spool the way writers must (whole, by rename), without write_session's own checks."""
    incoming = ensure_private_dir(spool / ".incoming")
    temp = incoming / f"{time.monotonic_ns()}.tmp"
    temp.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    final = spool / name
    temp.rename(final)
    return final


class Specs:
    """What the tray does with a delivered file (spec_from_request), recorded; rejections too."""

    def __init__(self) -> None:
        self.specs: queue.Queue[SessionSpec] = queue.Queue()
        self.rejected: queue.Queue[tuple[str, str]] = queue.Queue()

    def take(self, request: Any) -> None:
        self.specs.put(spec_from_request(request))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return ensure_private_dir(tmp_path / "fluxmon" / "spool")


@pytest.fixture
def specs(spool: Path) -> Iterator[Specs]:
    found = Specs()
    reader = SpoolReader(spool, on_session=found.take, on_rejected=lambda name, why: found.rejected.put((name, why)))
    reader.start()
    yield found
    reader.stop()


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"timeout_seconds": "abc"}, "config.timeout_seconds: expected number, got str"),
        ({"timeout_seconds": -5}, "config.timeout_seconds: expected more than 0"),
        ({"timeout_seconds": 1e12}, "config.timeout_seconds: expected more than 0 and at most a week"),
        ({"timeout_seconds": True}, "config.timeout_seconds: expected number, got bool"),
        ({"reconcile": "yes"}, "config.reconcile: expected bool, got str"),
        ({"monitor_types": "GitRepository"}, "config.monitor_types: expected list, got str"),
        ({"monitor_types": ["Kustomization", 3]}, "config.monitor_types: expected a list of strings"),
        ({"monitor_types": ["Deployment"]}, "config.monitor_types: not a Flux kind: 'Deployment'"),
    ],
)
def test_a_mistyped_setting_is_rejected_with_its_name_and_never_left_claimed(
    spool: Path, specs: Specs, config: dict[str, Any], reason: str
) -> None:
    drop(spool, "typo.json", record("typo", config=config))
    name, why = specs.rejected.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    assert name == "typo.json"
    assert reason in why
    assert (spool / "rejected" / "typo.json").exists()
    assert not list((spool / "claimed").iterdir())
    write_session(spool, record("next"))  # and the reader carries on
    assert specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS).id == "next"


def test_nan_is_not_a_timeout(spool: Path, specs: Specs) -> None:
    text = json.dumps(record("nan", config={"timeout_seconds": 1})).replace(
        '"timeout_seconds": 1', '"timeout_seconds": NaN'
    )
    drop(spool, "nan.json", text)
    assert "config.timeout_seconds" in specs.rejected.get(timeout=DELIVERY_TIMEOUT_SECONDS)[1]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"created_at": "yesterday"}, "created_at: expected a UTC time"),
        ({"remote": {"name": "origin", "url": "http://[oops/x.git"}}, "remote.url: not a valid URL"),
        ({"remote": {"name": "origin", "url": "https://h/x\x1b[2J.git"}}, "remote.url: contains control characters"),
    ],
)
def test_a_field_no_session_could_use_is_rejected(
    spool: Path, specs: Specs, changes: dict[str, Any], reason: str
) -> None:
    drop(spool, "bad.json", record("bad", **changes))
    assert reason in specs.rejected.get(timeout=DELIVERY_TIMEOUT_SECONDS)[1]
    assert not list((spool / "claimed").iterdir())


def test_a_skewed_created_at_is_clamped_to_the_order_files_arrived_in(spool: Path, specs: Specs) -> None:
    before = time.time()
    drop(spool, "future.json", record("future", created_at="2099-01-01T00:00:00Z"))
    future = specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    assert before - 1 <= future.created_at <= time.time()  # so it times out, and is not "newest" for ever
    drop(spool, "past.json", record("past", created_at="1999-01-01T00:00:00Z", ref={**record()["ref"], "name": "b"}))
    past = specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    assert past.created_at >= future.created_at  # received later, so never older
    drop(spool, "fresh.json", record("fresh", created_at=_now(), ref={**record()["ref"], "name": "c"}))
    fresh = specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    assert fresh.created_at >= past.created_at
    assert spec_from_request_timed_out(future)


def test_files_with_the_same_created_at_are_ordered_as_they_arrived(spool: Path, specs: Specs) -> None:
    """Back-to-back pushes in one second: the tray must call the later one the newest, not pick one by chance."""
    same_second = _now()
    for name, branch in (("first", "a"), ("second", "b"), ("third", "c")):
        drop(spool, f"{name}.json", record(name, created_at=same_second, ref={**record()["ref"], "name": branch}))
    received = [specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS) for _ in range(3)]
    assert [s.id for s in received] == ["first", "second", "third"]
    assert received[0].created_at < received[1].created_at < received[2].created_at


def test_a_created_at_with_a_fraction_of_a_second_is_read_to_the_microsecond(spool: Path, specs: Specs) -> None:
    drop(spool, "precise.json", record("precise", created_at="2026-11-25T19:00:51.250000Z"))
    precise = specs.specs.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    assert precise.created_at == pytest.approx(1795633251.25)


def spec_from_request_timed_out(spec: SessionSpec) -> bool:
    """Whether the session times out when its time is up (a created_at in 2099 never would)."""
    late = replace(spec, timeout_seconds=1.0)
    return evaluate(late, {}, {}, now=time.time() + 2).state is SessionState.TIMED_OUT


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_a_hostile_file_name_is_logged_without_its_control_characters(
    spool: Path, specs: Specs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fluxmon.spool")
    drop(spool, "x\x1b]0;owned\x07\x9b.json", "{not json")
    specs.rejected.get(timeout=DELIVERY_TIMEOUT_SECONDS)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected spool file")]
    assert not any(char in line for char in RAW_CONTROLS)


COPIES = 1000


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_a_thousand_files_for_one_commit_give_one_notification(fleet: Fleet, tmp_path: Path) -> None:
    """The commit is already deployed, so every session that gets through succeeds at once and notifies."""
    sha = fleet.git("rev-parse", "HEAD")
    url = fleet.git("remote", "get-url", "origin")
    spool = ensure_private_dir(tmp_path / "spool")
    base = record(repo=str(fleet.work), remote={"name": "origin", "url": url}, created_at=_now())
    base["ref"] = {**base["ref"], "new": sha}
    sent: set[tuple[str, str]] = set()
    notifications = []
    finals: queue.Queue[SessionSnapshot] = queue.Queue()
    with following(fleet) as (manager, _recorder):

        def notify(snapshot: SessionSnapshot) -> None:
            notice = notification_for(combine([snapshot]), sent=sent, now=datetime.now())
            if notice is not None:
                sent.add((notice.session_id, notice.outcome.value))
                notifications.append(notice)
            if snapshot.state.final:
                finals.put(snapshot)

        manager.subscribe(lambda push: notify(push.first))
        delivered: queue.Queue[str] = queue.Queue()

        def take(request: Any) -> None:
            manager.add(spec_from_request(request))
            delivered.put(request.id)

        reader = SpoolReader(spool, on_session=take)
        reader.start()
        try:
            for number in range(COPIES):
                write_session(spool, {**base, "id": f"copy-{number:04d}"})
            drop(spool, "marker.json", {**base, "id": "marker", "ref": {**base["ref"], "name": "marker-branch"}})
            copies = []
            while (session_id := delivered.get(timeout=DELIVERY_TIMEOUT_SECONDS)) != "marker":
                copies.append(session_id)  # every copy has been read once the marker, written last, is delivered
            ended: set[str] = set()
            while not set(copies) <= ended:
                ended.add(finals.get(timeout=DELIVERY_TIMEOUT_SECONDS).id)
        finally:
            reader.stop()
    assert len(copies) == 1
    assert [n.outcome for n in notifications if n.session_id != "marker"] == [SessionState.SUCCEEDED]
    assert not list(spool.glob("*.json"))
    assert not list((spool / "claimed").iterdir())
