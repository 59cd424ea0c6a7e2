"""The spool reader with a real watchdog observer: delivery, start-up scan, locking, and every hostile file."""

from __future__ import annotations

import json
import logging
import os
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.errors import SpoolError
from fluxmon.core.spool import (
    MAX_SESSION_BYTES,
    SessionRequest,
    SpoolReader,
    ensure_private_dir,
    lock_holder,
    write_session,
)
from harness.spoolrecords import SHA, record

DELIVERY_TIMEOUT_SECONDS = 10


def another_push() -> dict[str, Any]:
    """The default record's ref, pushed to another commit: the reader drops copies of the same push."""
    return {**record()["ref"], "new": "0f9e8d7c6b5a49382716a5b4c3d2e1f009182736"}


class Recorder:
    """Collects what the reader delivers, so tests can wait on it with a timeout."""

    def __init__(self) -> None:
        self.sessions: queue.Queue[SessionRequest] = queue.Queue()
        self.rejected: queue.Queue[tuple[str, str]] = queue.Queue()

    def next_session(self) -> SessionRequest:
        return self.sessions.get(timeout=DELIVERY_TIMEOUT_SECONDS)

    def next_rejection(self) -> tuple[str, str]:
        return self.rejected.get(timeout=DELIVERY_TIMEOUT_SECONDS)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "fluxmon" / "spool"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def reader(spool: Path, recorder: Recorder) -> Iterator[SpoolReader]:
    instance = SpoolReader(
        spool,
        on_session=recorder.sessions.put,
        on_rejected=lambda name, why: recorder.rejected.put((name, why)),
    )
    instance.start()
    yield instance
    instance.stop()


def test_a_written_session_is_delivered_once(reader: SpoolReader, spool: Path, recorder: Recorder) -> None:
    write_session(spool, record("s1"))
    session = recorder.next_session()
    assert (session.id, session.new_sha, session.branch) == ("s1", SHA, "main")
    assert session.changed_paths == ("apps/web.yaml",)
    assert not list(spool.glob("*.json"))
    assert not list((spool / "claimed").iterdir())
    assert recorder.sessions.empty()


def test_files_dropped_while_the_app_was_down_are_not_lost(spool: Path, recorder: Recorder) -> None:
    write_session(spool, record("early"))
    ensure_private_dir(spool / "claimed")
    (spool / "claimed" / "interrupted.json").write_text(json.dumps(record("interrupted", ref=another_push())))
    reader = SpoolReader(spool, on_session=recorder.sessions.put)
    reader.start()
    try:
        assert {recorder.next_session().id, recorder.next_session().id} == {"early", "interrupted"}
    finally:
        reader.stop()


def hostile_files(spool: Path, tmp_path: Path) -> dict[str, str]:
    """Write one of each bad kind of file into the spool; returns name -> the reason expected.

    Each arrives whole, by rename, as writers must deliver: written in place, the reader may take a file while it
    is still empty, and reject it for that instead (which made this test flaky).
    """

    def put(name: str, text: str) -> None:
        temp = tmp_path / f"{name}.tmp"
        temp.write_text(text)
        temp.rename(spool / name)

    put("malformed.json", "{not json")
    put("partial.json", json.dumps(record("partial"))[:100])
    put("oversized.json", json.dumps(record("oversized", padding="x" * MAX_SESSION_BYTES)))
    put("future.json", json.dumps(record("future", schema="fluxmon.session/v9")))
    put("wrongtype.json", json.dumps(record("wrongtype", confirmed="yes")))
    put("leaky.json", json.dumps(record("leaky", remote={"name": "o", "url": "https://bot:pw@example.com/x"})))
    put("deep.json", "[" * 30_000 + "]" * 30_000)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(record("secret")))
    (spool / "symlink.json").symlink_to(secret)
    foreign = tmp_path / "foreign.tmp"
    foreign.write_text(json.dumps(record("foreign")))
    os.chown(foreign, 4242, 4242)
    foreign.rename(spool / "foreign.json")
    os.mkfifo(spool / "fifo.json")
    return {
        "malformed.json": "malformed JSON",
        "partial.json": "malformed JSON",
        "oversized.json": "over the",
        "future.json": "unknown schema 'fluxmon.session/v9'",
        "wrongtype.json": "confirmed: expected bool, got str",
        "leaky.json": "remote.url: carries credentials",
        "deep.json": "nested too deeply",
        "symlink.json": "is a symlink",
        "foreign.json": "owned by uid 4242",
        "fifo.json": "not a regular file",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user needs root")
def test_every_hostile_file_is_rejected_and_the_reader_carries_on(
    reader: SpoolReader, spool: Path, recorder: Recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fluxmon.spool")
    expected = hostile_files(spool, tmp_path)
    # The reader is already running, so the observer (not the start-up scan) reports each of these.
    write_session(spool, record("good"))
    assert recorder.next_session().id == "good"
    rejected = dict(recorder.next_rejection() for _ in expected)
    assert set(rejected) == set(expected)
    for name, reason in expected.items():
        assert reason in rejected[name], (name, rejected[name])
        assert (spool / "rejected" / name).exists() or (spool / "rejected" / name).is_symlink()
    assert sorted(p.name for p in spool.iterdir() if p.suffix == ".json") == []
    assert len([r for r in caplog.records if r.getMessage().startswith("rejected spool file")]) == len(expected)
    assert (tmp_path / "secret.json").exists(), "the symlink's target must be left alone"
    write_session(spool, record("after", ref=another_push()))  # a copy of "good" would be dropped
    assert recorder.next_session().id == "after"


def test_a_second_instance_is_refused_and_told_who_holds_the_spool(reader: SpoolReader, spool: Path) -> None:
    second = SpoolReader(spool, on_session=lambda session: None)
    with pytest.raises(SpoolError, match=rf"another fluxmon instance \(pid {os.getpid()}, since 20"):
        second.start()
    holder = lock_holder(spool)
    assert holder is not None
    assert holder.pid == os.getpid()


def test_the_lock_is_released_on_stop(spool: Path) -> None:
    reader = SpoolReader(spool, on_session=lambda session: None)
    reader.start()
    reader.stop()
    assert lock_holder(spool) is None


def test_a_failing_handler_keeps_the_file_for_the_next_start(spool: Path, recorder: Recorder) -> None:
    failures: queue.Queue[str] = queue.Queue()

    def broken(session: SessionRequest) -> None:
        failures.put(session.id)
        raise RuntimeError("the session manager fell over")

    reader = SpoolReader(spool, on_session=broken)
    reader.start()
    write_session(spool, record("kept"))
    assert failures.get(timeout=DELIVERY_TIMEOUT_SECONDS) == "kept"
    reader.stop()
    assert (spool / "claimed" / "kept.json").exists()
    again = SpoolReader(spool, on_session=recorder.sessions.put)
    again.start()
    try:
        assert recorder.next_session().id == "kept"
    finally:
        again.stop()


def test_unsafe_spool_directories_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "spool").symlink_to(real)
    with pytest.raises(SpoolError, match="is a symlink"):
        ensure_private_dir(tmp_path / "linked" / "spool")
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        (foreign / "spool").mkdir(parents=True)
        os.chown(foreign / "spool", 4242, 4242)
        with pytest.raises(SpoolError, match="owned by uid 4242"):
            ensure_private_dir(foreign / "spool")


def test_a_spool_readable_by_others_is_tightened(tmp_path: Path) -> None:
    spool = tmp_path / "open" / "spool"
    spool.mkdir(parents=True, mode=0o755)
    spool.chmod(0o755)
    ensure_private_dir(spool)
    assert spool.stat().st_mode & 0o777 == 0o700


def test_the_writer_refuses_what_the_reader_would_reject(spool: Path) -> None:
    with pytest.raises(ValueError, match="carries credentials"):
        write_session(spool, record("x", remote={"name": "o", "url": "https://u:p@h/x"}))
    assert not list(spool.glob("*"))
