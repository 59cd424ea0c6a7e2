"""The outbox: every webhook and command a push's outcome is handed to, as a file, until it went out.

    <state>/outbox/<key>.<outcome>.<target>.json     one delivery: what to send, and how it went

Why files: a tray killed between a failed attempt and its retry must not lose the delivery, and two fluxmon
processes that follow the same push (the tray, and `fluxmon wait` in a terminal) must hand its outcome on once.

    claim     a new entry is written to a temporary file and hard-linked to its name, which fails if the name
              exists: of all the processes that decide the same outcome, exactly one claims it, and a claimed
              entry is complete (never half written). The entry stays after it was delivered, as the record
              that it was (and how: a command's exit status, which the history keeps too), until it is
              `KEPT_SECONDS` old.
    attempt   an attempt holds the entry's flock (non-blocking: a busy entry is someone else's now), reads it
              again, and replaces it (temp file, rename) with the result; a process that locked the old file
              after the rename sees that its inode is gone and leaves it.

The entry holds the exact body and the push's FLUXMON_* variables; never a secret, a webhook URL (a Slack URL is
a credential) or fluxmon's environment: the target is named by a fingerprint, and looked up in the config.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fluxmon.core.spool import ensure_private_dir

log = logging.getLogger("fluxmon.outbox")

OUTBOX = "outbox"
KEPT_SECONDS = 7 * 24 * 3600.0
"""How long a delivered (or given up) entry is kept: the record that the outcome went out, and how."""
PENDING = "pending"
SENT = "sent"
GIVEN_UP = "given-up"


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Retries: the first after `first_seconds`, each next one twice as late up to `max_seconds`, `attempts` in
    all. Pure: `delay(failures)` decides."""

    first_seconds: float = 5.0
    max_seconds: float = 600.0
    attempts: int = 8

    def delay(self, failures: int) -> float | None:
        """Seconds to wait after `failures` failed attempts; None: give up."""
        if failures >= self.attempts:
            return None
        return min(self.first_seconds * 2.0 ** (failures - 1), self.max_seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One delivery of one outcome to one target."""

    kind: str
    """"webhook" or "command"."""
    target: str
    """The target's fingerprint (core/integrations.py `fingerprint`): its config may change between runs."""
    shown: str
    """The target as logs name it (a URL's origin, a program's name)."""
    key: str
    """The idempotency key: the push by what it is, and its outcome."""
    push_id: str
    outcome: str
    body: str
    """The exact body (a webhook's, signed as is; a command's stdin)."""
    variables: dict[str, str]
    """A command's FLUXMON_* environment (on top of fluxmon's own at the time it runs)."""
    workdir: str
    created_at: float
    status: str = PENDING
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    exit_status: int | None = None
    finished_at: float | None = None
    push_key: str = ""
    """The push as the history names it (core/store.py `push_key`): a command's result is recorded there too."""
    result: str = ""
    """How a command ended (core/store.py `command_record`); "" until it ran."""

    @property
    def name(self) -> str:
        return f"{self.key.replace(':', '.')}.{self.target}.json"


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """How one attempt went: `ok`, else whether trying again may help."""

    ok: bool
    retry: bool = False
    error: str = ""
    exit_status: int | None = None
    result: str = ""
    """How a command ended: "exited", "timed-out", "not-found"... (core/store.py `command_record`)."""


def _entry_from(record: dict[str, Any]) -> Entry:
    known = {f.name for f in fields(Entry)}
    return Entry(**{key: value for key, value in record.items() if key in known})


class Outbox:
    """The entries under `<state>/outbox`; safe to share between threads and processes."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / OUTBOX

    def _ready(self) -> None:
        self.directory.parent.parent.mkdir(parents=True, exist_ok=True)
        ensure_private_dir(self.directory.parent)
        ensure_private_dir(self.directory)

    def _write_temp(self, entry: Entry) -> Path:
        """The entry in a new private file of its own (mkstemp: unique across threads and processes)."""
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".{entry.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(entry), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(name)

    def claim(self, entry: Entry) -> bool:
        """Add `entry` unless any process claimed the same outcome for the same target before; True if this
        call did."""
        self._ready()
        temp = self._write_temp(entry)
        try:
            os.link(temp, self.directory / entry.name)
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)
        return True

    def entries(self) -> list[Entry]:
        """Every readable entry, oldest first; an unreadable one is skipped (and said once per read)."""
        found = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else ():
            try:
                found.append(_entry_from(json.loads(path.read_text(encoding="utf-8"))))
            except FileNotFoundError:
                continue  # trimmed meanwhile
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable outbox entry %s: %s", path.name, exc)
        return sorted(found, key=lambda entry: entry.created_at)

    def for_push(self, push_id: str) -> list[Entry]:
        """What became of a push's outcome: its webhooks and commands, and a command's exit status."""
        return [entry for entry in self.entries() if entry.push_id == push_id]

    def attempt(self, name: str, now: float, deliver: Callable[[Entry], Attempt], backoff: Backoff) -> Entry | None:
        """Deliver the entry called `name` if it is still pending and due, holding its lock; returns it as it
        is now (None: someone else holds it, or it is not due)."""
        with self._locked(name) as entry:
            if entry is None or entry.status != PENDING or entry.next_at > now:
                return None
            result = deliver(entry)
            failures = entry.attempts + 1
            if result.ok:
                updated = replace(entry, status=SENT, attempts=failures, exit_status=result.exit_status,
                                  last_error=result.error, finished_at=now, result=result.result)  # fmt: skip
            else:
                delay = backoff.delay(failures) if result.retry else None
                updated = replace(
                    entry,
                    status=PENDING if delay is not None else GIVEN_UP,
                    attempts=failures,
                    next_at=now + delay if delay is not None else entry.next_at,
                    last_error=result.error,
                    exit_status=result.exit_status,
                    finished_at=None if delay is not None else now,
                    result=result.result,
                )
            self._replace(updated)
            return updated

    @contextmanager
    def _locked(self, name: str) -> Iterator[Entry | None]:
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            try:
                current = path.lstat()
            except FileNotFoundError:
                yield None
                return
            if current.st_ino != os.fstat(fd).st_ino:
                yield None  # replaced since we opened it: another process attempted it meanwhile
                return
            with os.fdopen(os.dup(fd), encoding="utf-8") as handle:
                yield _entry_from(json.load(handle))
        finally:
            os.close(fd)  # releases the flock

    def _replace(self, entry: Entry) -> None:
        temp = self._write_temp(entry)
        temp.replace(self.directory / entry.name)

    def next_due(self, names: Collection[str] | None = None) -> float | None:
        """When the earliest pending entry (of `names`, if given) is due; None: none is pending."""
        times = [
            entry.next_at
            for entry in self.entries()
            if entry.status == PENDING and (names is None or entry.name in names)
        ]
        return min(times) if times else None

    def trim(self, now: float) -> None:
        """Forget deliveries finished more than KEPT_SECONDS ago, and temporary files a killed process left."""
        for entry in self.entries():
            if entry.status != PENDING and (entry.finished_at or entry.created_at) < now - KEPT_SECONDS:
                (self.directory / entry.name).unlink(missing_ok=True)
        for temp in self.directory.glob(".*.tmp") if self.directory.is_dir() else ():
            try:
                if temp.stat().st_mtime < now - 3600:
                    temp.unlink(missing_ok=True)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("could not remove %s: %s", temp.name, exc.strerror)
