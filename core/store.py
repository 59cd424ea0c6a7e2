"""Where sessions are kept: the active ones (resumed after a restart) and a history of finished ones.

Layout under `$XDG_STATE_HOME/fluxmon` (default ~/.local/state/fluxmon), private to the user:
    active/<id>.json     the spec of each push still being followed
    history.jsonl        one record per push's outcome (every cluster's), newest last; see "The history" below
    history.lock         flock'ed by whoever appends to or trims the history, for that moment only
    untold/<id>          a push whose outcome the user has not been told yet (made as the outcome is decided,
                         before anyone is told; removed once the notification went out or was deliberately
                         skipped), so that a tray killed in between tells it at its next start
    told/<id>            a push whose outcome was told: a push resumed after a restart is not told again
    pause.json           until when the user paused notifications (so that "until tomorrow" survives a restart)
    .lock                held (flock) by the one tray that owns this folder; holds its pid

The folder is per user whatever the environment (the spool moves with XDG_RUNTIME_DIR, this does not), so its
lock, not the spool's, is what keeps a user to one tray: two would resume the same sessions and notify twice.

The history is one for all: the tray records every push it follows, and `wait`/`watch` record theirs too, while
the tray runs, without its `.lock`. So that it can be relied on:
- Append only, one record a line. Each append takes `history.lock`, opens the file O_APPEND, writes the whole
  line in one write() and fsyncs it: two writers never interleave, and a record once appended survives a crash.
- A torn last line (a writer killed mid-write, a full disk) is skipped by readers, and the next append starts on
  a new line, so that it cannot glue a good record to the torn one.
- Retention (config `history_limit`, `history_max_age`): readers never see more than the limit, nor older pushes;
  the file is rewritten (atomically, under the lock) once it holds a tenth more, or pushes a tenth older.
- Versioned records (`version`, RECORD_VERSION): `migrate` reads every older shape as the current one.
- One push, one record. The tray (the store's owner) follows each push the hooks capture once, so its records
  are each their own push, kept by id. Another follower (`wait`, `watch`) records its push unless a record of the
  same push (`key`: remote, branch and commit) is already there with an outcome at least as final (`rank`), and
  readers keep one record per push that several followers recorded (`one_per_push`).
- A command on outcome (#14) is its own line, `"kind": "command"` (`command_record`), appended by whichever
  process ran it once it ended (exited, timed out, not found...), beside its push's record and never rewriting
  it: a command may end before its push is recorded (`wait` runs it, then records) or long after (the tray).
  Readers fold each into the push it ran for (`fold_commands`: the record of its id, else the one that stands for
  its `key`), whose `commands` list it joins; a command whose push is not (or no longer) there is not shown.
  Push records carry no `kind`, and every push read back has `commands` (empty before version 3).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from fluxmon.core.config import Retention
from fluxmon.core.errors import FluxmonError
from fluxmon.core.hints import Hint
from fluxmon.core.objects import ObjectRef
from fluxmon.core.plan import normalize_remote_url
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.spool import ensure_private_dir, hold_lock
from fluxmon.core.verdict import Phase

log = logging.getLogger("fluxmon.store")

HISTORY_LIMIT = 200
"""The most of the newest pushes a front end reads at once: the untold ones at a start (older ones are too old to
tell), the MCP server's list. The history itself keeps more (config `history_limit`)."""
UNTOLD = "untold"
TOLD = "told"
PAUSE_FILE = "pause.json"
HISTORY_FILE = "history.jsonl"
HISTORY_LOCK = "history.lock"
RECORD_VERSION = 3
"""The history record's shape. 3 added the command records (`"kind": "command"`), read back into their push's
`commands`; 2 added `version`, `key`, `follower`, `recorded_at` and each resource's `ready_after_seconds`; 1 (no
`version`) had `clusters` from #13 on, and none before it (one cluster's session)."""
COMMAND = "command"
"""The `kind` of a command's record; a push's record has no `kind`."""
OWNER = "tray"
"""The follower that owns the store (the engine given a state dir: the tray, or the demo's)."""
DECISIVE = frozenset({"succeeded", "failed", "superseded", "not-deployed"})
"""Outcomes that say what became of the push; timed-out and cancelled only say that the follower stopped."""
LOCK_PATIENCE_SECONDS = 10.0
"""How long an append waits for another writer (which holds the lock for one write) before giving up."""


class HistoryError(FluxmonError):
    """The history cannot be written (busy for too long, a disk error)."""

    title = "History not recorded"


def spec_record(spec: SessionSpec) -> dict[str, Any]:
    record = asdict(spec)
    record["changed_paths"] = list(spec.changed_paths) if spec.changed_paths is not None else None
    record["monitor_types"] = list(spec.monitor_types)
    return record


def spec_from_record(record: Mapping[str, Any]) -> SessionSpec:
    known = {f.name for f in fields(SessionSpec)}
    values = {k: v for k, v in record.items() if k in known}
    if values.get("changed_paths") is not None:
        values["changed_paths"] = tuple(values["changed_paths"])
    if values.get("monitor_types"):
        values["monitor_types"] = tuple(values["monitor_types"])
    return SessionSpec(**values)


def push_key(*, remote: str, branch: str, commit: str, repo: str = "") -> str:
    """What makes two records the same push, whoever followed it: the remote (every spelling of it alike), the
    branch or tag, and the commit."""
    return f"{normalize_remote_url(remote, base_dir=repo or None)} {branch} {commit}"


def push_record(push: PushSnapshot) -> dict[str, Any]:
    """The stable JSON shape of a push (`fluxmon wait --json`, the history file): the push's outcome at the top,
    every followed object in `resources` (each naming its `context`), and each cluster's own outcome in
    `clusters`. With one cluster, the top level reads as that cluster's session always did."""
    return {
        "version": RECORD_VERSION,
        "key": push_key(remote=push.remote, branch=push.branch, commit=push.commit, repo=push.repo),
        "id": push.id,
        "state": push.state.value,
        "message": push.message,
        "commit": push.commit,
        "branch": push.branch,
        "remote": push.remote,
        "subject": push.subject,
        "repo": push.repo,
        "started_at": push.started_at,
        "ended_at": push.ended_at,
        "elapsed_seconds": round(push.elapsed, 3),
        "failed": str(push.failed) if push.failed else None,
        "failed_on": push.failed_on or None,
        "notes": [f"{c.context}: {note}" if push.several else note for c in push.clusters for note in c.notes],
        "resources": [
            _resource_record(r, cluster.context, started_at=push.started_at)
            for cluster in push.clusters
            for r in cluster.resources
        ],
        "clusters": [
            {
                "context": cluster.context,
                "state": cluster.state.value,
                "message": cluster.message,
                "ended_at": cluster.ended_at,
                "elapsed_seconds": round(cluster.elapsed, 3),
                "failed": str(cluster.failed) if cluster.failed else None,
                "notes": list(cluster.notes),
                "problem": cluster.cluster.problem or None,
            }
            for cluster in push.clusters
        ],
    }


def _resource_record(r: ResourceStatus, context: str, *, started_at: float) -> dict[str, Any]:
    return {
        "context": context,
        "kind": r.ref.kind,
        "namespace": r.ref.namespace,
        "name": r.ref.name,
        "role": r.role,
        "phase": r.phase.value,
        "reason": r.reason,
        "message": r.message,
        "revision": r.revision,
        "seconds_in_phase": {k: round(v, 3) for k, v in r.seconds_in_phase.items()},
        "ready_after_seconds": round(r.since - started_at, 3) if r.phase is Phase.READY else None,
        "depends_on": [{"ref": str(ref), "phase": phase.value} for ref, phase in r.depends_on],
        "parent": str(r.parent) if r.parent else None,
        "applied_by": str(r.applied_by) if r.applied_by else None,
        "error": r.error,
        "hint": asdict(r.hint) if r.hint else None,
    }


def push_from_record(record: Mapping[str, Any]) -> PushSnapshot:
    """A settled push back from its history record, for the tray's menu and details after a restart.

    Events are not kept in the history; the error text they gave is (`error`), so it stands in as the message.
    A record from before clusters were named is one cluster's session.
    """
    clusters = record.get("clusters") or [{**record, "context": ""}]
    sessions = []
    for cluster in clusters:
        context = cluster.get("context", "")
        resources = tuple(
            _resource_from_record(r, started_at=record["started_at"])
            for r in record["resources"]
            if r.get("context", "") == context
        )
        sessions.append(
            SessionSnapshot(
                id=record["id"],
                state=SessionState(cluster["state"]),
                message=cluster["message"],
                commit=record["commit"],
                branch=record["branch"],
                remote=record["remote"],
                subject=record["subject"],
                repo=record["repo"],
                started_at=record["started_at"],
                updated_at=cluster["ended_at"] or record["started_at"],
                ended_at=cluster["ended_at"],
                resources=resources,
                notes=tuple(cluster.get("notes", ())),
                failed=_parse_ref(cluster["failed"]) if cluster.get("failed") else None,
                context=context,
            )
        )
    return PushSnapshot(
        clusters=tuple(sessions),
        state=SessionState(record["state"]),
        message=record["message"],
        failed_on=record.get("failed_on") or "",
    )


def _resource_from_record(r: Mapping[str, Any], *, started_at: float) -> ResourceStatus:
    return ResourceStatus(
        ref=ObjectRef(kind=r["kind"], namespace=r["namespace"], name=r["name"]),
        role=Role(r["role"]),
        phase=Phase(r["phase"]),
        reason=r["reason"],
        message=r.get("error") or r["message"],
        revision=r["revision"],
        since=started_at,
        seconds_in_phase=r.get("seconds_in_phase", {}),
        depends_on=tuple((_parse_ref(d["ref"]), Phase(d["phase"])) for d in r.get("depends_on", [])),
        parent=_parse_ref(r["parent"]) if r.get("parent") else None,
        applied_by=_parse_ref(r["applied_by"]) if r.get("applied_by") else None,
        hint=Hint(**r["hint"]) if r.get("hint") else None,
    )


def migrate(record: Any) -> dict[str, Any]:
    """Any record this or an older version wrote, in the current shape; raises ValueError for one it cannot read.

    Version 1 records have no `key` (made here), no `follower` (only the tray kept a history then), and no
    `ready_after_seconds`: the time an object spent in its phases before Ready stands in (its timeline started
    when the session first saw it, at the push). Those from before #13 have no `clusters` either: the top level
    is the one cluster's session. A newer version's record is read for the fields this version knows. A push of
    any version gets `commands` (empty here: `fold_commands` fills it); a command's own record (version 3 on,
    `kind`) is checked and kept as it is.
    """
    if not isinstance(record, Mapping):
        raise ValueError("not a JSON object")
    version = record.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"version {version!r} is not a number")
    if "kind" in record:
        return _migrate_command(record)
    migrated = dict(record)
    for field in ("id", "state", "commit", "branch", "remote", "started_at"):
        if field not in migrated:
            raise ValueError(f"no {field!r}")
    SessionState(migrated["state"])  # raises ValueError for a state this version does not know
    for field in ("clusters", "resources"):  # every reader walks these: a wrong shape must not reach one
        entries = migrated.get(field, [])
        if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
            raise ValueError(f"{field!r} is not a list of objects")
    migrated.setdefault("commands", [])  # filled in by `fold_commands`
    if version >= 2:
        return migrated
    if not isinstance(migrated.get("clusters"), list):
        migrated["clusters"] = [
            {
                "context": "",
                "state": migrated["state"],
                "message": migrated.get("message", ""),
                "ended_at": migrated.get("ended_at"),
                "elapsed_seconds": migrated.get("elapsed_seconds"),
                "failed": migrated.get("failed"),
                "notes": migrated.get("notes", []),
                "problem": None,
            }
        ]
        migrated.setdefault("failed_on", "")  # its one cluster is the current context, ""
    resources = []
    for resource in migrated.get("resources", []):
        if not isinstance(resource, Mapping):
            raise ValueError("a resource is not a JSON object")
        resource = {"context": "", **resource}
        if "ready_after_seconds" not in resource:
            seconds = resource.get("seconds_in_phase") or {}
            before = sum(v for k, v in seconds.items() if k != Phase.READY.value)
            resource["ready_after_seconds"] = round(before, 3) if resource.get("phase") == Phase.READY else None
        resources.append(resource)
    migrated["resources"] = resources
    migrated["key"] = push_key(
        remote=migrated["remote"], branch=migrated["branch"], commit=migrated["commit"], repo=migrated.get("repo", "")
    )
    migrated.setdefault("follower", OWNER)
    migrated["version"] = RECORD_VERSION
    return migrated


def _migrate_command(record: Mapping[str, Any]) -> dict[str, Any]:
    """A command's record (there are none before version 3), checked for what readers rely on."""
    if record["kind"] != COMMAND:
        raise ValueError(f"kind {record['kind']!r} is not one this version knows")
    for field in ("key", "id", "delivery", "command", "outcome", "result"):
        if not isinstance(record.get(field), str):
            raise ValueError(f"a command's record has no {field!r}")
    return dict(record)


def command_record(
    *,
    key: str,
    push_id: str,
    delivery: str,
    command: str,
    run: Sequence[str],
    outcome: str,
    result: str,
    exit_status: int | None,
    error: str,
    finished_at: float,
    follower: str,
) -> dict[str, Any]:
    """A command's result as the history keeps it, for the push `key` (`push_key`) and `push_id` it ran for.

    `delivery` names it once across processes (its outbox entry), `command` as the logs name it (the program),
    `run` its arguments (credentials in URLs removed), `result` how it ended: `exited` (with `exit_status`;
    negative: killed by that signal), `timed-out`, `not-found`, `not-executable`, `cannot-start`, `cut-short`
    (fluxmon stopped first) or `not-configured` (gone from the config before it ran)."""
    return {
        "version": RECORD_VERSION,
        "kind": COMMAND,
        "key": key,
        "id": push_id,
        "delivery": delivery,
        "command": command,
        "run": list(run),
        "outcome": outcome,
        "result": result,
        "exit_status": exit_status,
        "error": error or None,
        "finished_at": finished_at,
        "follower": follower,
    }


COMMAND_FIELDS = ("command", "run", "outcome", "result", "exit_status", "error", "finished_at", "follower")
"""A command's fields as its push's `commands` lists them (the rest name the push, or the delivery)."""


def is_push(record: Mapping[str, Any]) -> bool:
    """A push's record, not a command's (`kind`)."""
    return "kind" not in record


def fold_commands(
    pushes: Sequence[Mapping[str, Any]], commands: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The pushes, each with the commands that ran for it in `commands` (oldest first): a command joins the push
    of its id when that record stands, else the newest that stands for its push (`key`): the tray's, when `wait`
    ran the command and the tray's record stands for the push. A command for no push here is left out."""
    by_id = {str(push["id"]): index for index, push in enumerate(pushes)}
    by_key = {str(push.get("key")): index for index, push in enumerate(pushes)}
    ran: dict[int, list[dict[str, Any]]] = {}
    for command in commands:
        index = by_id.get(str(command["id"]), by_key.get(str(command["key"])))
        if index is None:
            continue
        ran.setdefault(index, []).append({field: command.get(field) for field in COMMAND_FIELDS})
    return [{**push, "commands": ran.get(index, [])} for index, push in enumerate(pushes)]


def rank(record: Mapping[str, Any]) -> tuple[bool, bool]:
    """How final a record of a push is: an outcome that says what became of the push (not a follower that stopped
    waiting), then one whose every cluster is final (not a `wait` that failed fast while others went on)."""
    final = {state.value for state in SessionState if state.final}
    return (record["state"] in DECISIVE, all(c.get("state") in final for c in record.get("clusters", [])))


def is_new(record: Mapping[str, Any], kept: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `record` adds to the history `kept`: the owner's push unless its id is there (each capture is its
    own push); another follower's unless a record of the same push is there with an outcome as final."""
    if not is_push(record):  # a command's result, once (each delivery runs once, across processes)
        return not any(r.get("delivery") == record["delivery"] for r in kept if not is_push(r))
    kept = [r for r in kept if is_push(r)]
    if record.get("follower") == OWNER:
        return not any(r["id"] == record["id"] and r.get("follower") == OWNER for r in kept)
    return not any(r.get("key") == record["key"] and rank(r) >= rank(record) for r in kept)


def one_per_push(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The history with one record per push, in order. Records of one key that the owner alone made are each their
    own push (the same commit pushed again); where another follower recorded it too, the most final record stands
    for it (the owner's, then the first, among equals)."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(str(record.get("key")), []).append(index)
    kept: set[int] = set()
    for indexes in groups.values():
        if all(records[i].get("follower") == OWNER for i in indexes):
            kept.update(indexes)
        else:
            kept.add(max(indexes, key=lambda i: (rank(records[i]), records[i].get("follower") == OWNER, -i)))
    return [record for index, record in enumerate(records) if index in kept]


def read_lines(data: bytes) -> tuple[list[tuple[bytes, dict[str, Any]]], int]:
    """Each readable record of a history file's bytes (with its line as written), and how many lines were not:
    a torn last line, or one no version of fluxmon wrote."""
    readable, unreadable = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            readable.append((line, migrate(json.loads(line))))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            unreadable += 1
    return readable, unreadable


class History:
    """history.jsonl: appended under `history.lock` (any process, the tray's lock or not), read without it."""

    def __init__(self, directory: Path, retention: Retention | None = None) -> None:
        self.directory = directory
        self.retention = retention or Retention()
        self.path = directory / HISTORY_FILE
        self.unreadable = 0
        """Lines skipped by the last read (a torn last line, damage): `fluxmon history` says so."""

    def read(self, *, now: float | None = None, tail: int | None = None) -> list[Mapping[str, Any]]:
        """The pushes kept, oldest first: one record per push, none past the retention. `tail`: only look at that
        many of the newest lines (the tray's recent list, without parsing a year of history)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HistoryError(f"cannot read {self.path}: {exc.strerror}") from exc
        if tail is not None:
            data = b"\n".join(data.split(b"\n")[-tail - 1 :])
        readable, self.unreadable = read_lines(data)
        records = [record for _, record in readable]
        pushes = self._retained(records, now=time.time() if now is None else now)
        return fold_commands(pushes, [r for r in records if not is_push(r)])

    def append(self, record: Mapping[str, Any], *, now: float | None = None) -> set[str] | None:
        """Append `record` unless the history has it (`is_new`); returns None when it was not appended, else the
        ids the history keeps when this append trimmed it, or an empty set when it did not."""
        now = time.time() if now is None else now
        line = json.dumps(record).encode("utf-8") + b"\n"
        with self._locked():
            # Only lines that name the id (the owner's) or the commit (another follower's) can be the same push
            # (`is_new`): those alone are parsed, read a line at a time (a year of history is tens of MB), and the
            # rest only when retention has something to let go.
            field = "delivery" if not is_push(record) else "id" if record.get("follower") == OWNER else "commit"
            needles = [json.dumps(str(record.get(field, ""))).encode()]
            scan = _scan(self.path, needles)
            if not is_new(record, [r for _, r in read_lines(b"\n".join(scan.matching))[0]]):
                return None
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, (b"\n" if scan.torn else b"") + line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if not scan.lines:
                _fsync_dir(self.directory)  # a new file: its name is on disk too
            oldest = next((r for _, r in read_lines(b"\n".join(scan.first))[0]), record)
            limit, max_age = self.retention.limit, self.retention.max_age
            pushes = scan.lines - scan.commands + is_push(record)  # retention counts pushes, not their commands
            if pushes <= limit + max(1, limit // 10) and _recorded_at(oldest) >= now - max_age * 1.1:
                return set()
            return self._trim(read_lines(self.path.read_bytes())[0], now=now)

    def _retained(self, records: list[dict[str, Any]], *, now: float) -> list[Mapping[str, Any]]:
        """The push records retention keeps (the commands' records are not among them)."""
        young = [r for r in records if is_push(r) and _recorded_at(r) >= now - self.retention.max_age]
        return one_per_push(young)[-self.retention.limit :]

    def _trim(self, readable: list[tuple[bytes, dict[str, Any]]], *, now: float) -> set[str]:
        """Rewrite the file without what retention lets go (once there is a tenth too much, so that not every
        append rewrites it); the caller holds the lock. Returns the ids kept."""
        pushes = self._retained([r for _, r in readable], now=now)
        kept_records = {id(r) for r in pushes}
        # A command's record goes with its push; one whose push is not recorded yet (`wait` runs the command
        # first) stays while it is young.
        kept_keys = {r.get("key") for r in pushes}
        all_keys = {r.get("key") for _, r in readable if is_push(r)}
        kept = [
            (line, r)
            for line, r in readable
            if id(r) in kept_records or (not is_push(r) and self._goes_with(r, kept_keys, all_keys, now=now))
        ]
        temp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, b"".join(line + b"\n" for line, _ in kept))
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(self.path)
        _fsync_dir(self.directory)
        return {str(r["id"]) for _, r in kept if is_push(r)}

    def _goes_with(self, command: Mapping[str, Any], kept: set[Any], known: set[Any], *, now: float) -> bool:
        """Whether a trim keeps a command's record: its push is kept, or not recorded yet and it is young."""
        if command["key"] in kept:
            return True
        return command["key"] not in known and _recorded_at(command) >= now - self.retention.max_age

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """`history.lock`, held for one append: other writers wait for it (up to LOCK_PATIENCE_SECONDS)."""
        fd = os.open(self.directory / HISTORY_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            deadline = time.monotonic() + LOCK_PATIENCE_SECONDS
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise HistoryError(
                            f"{self.directory / HISTORY_LOCK} stayed locked for {LOCK_PATIENCE_SECONDS:g}s "
                            "(another fluxmon is stuck writing the history)"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
            yield
        finally:
            os.close(fd)  # closing releases the flock


@dataclass(frozen=True, kw_only=True, slots=True)
class _Scan:
    """What an append needs to know of the file, read one line at a time."""

    lines: int
    """Lines that are not blank."""
    commands: int
    """Lines that are commands' records."""
    matching: tuple[bytes, ...]
    """The lines that hold any of the needles."""
    first: tuple[bytes, ...]
    """The first few lines: the oldest record is among them."""
    torn: bool
    """The file does not end with a newline: its last line was cut off."""


_COMMAND_MARK = json.dumps({"kind": COMMAND})[1:-1].encode()
"""How a command's record's line shows it is one (json.dumps, as `append` writes it)."""


def _scan(path: Path, needles: Sequence[bytes], *, first: int = 10) -> _Scan:
    lines, commands, last = 0, 0, b"\n"
    matching: list[bytes] = []
    head: list[bytes] = []
    try:
        with path.open("rb") as handle:
            for line in handle:
                last = line
                if not line.strip():
                    continue
                lines += 1
                commands += _COMMAND_MARK in line
                if len(head) < first:
                    head.append(line)
                if any(needle in line for needle in needles):
                    matching.append(line)
    except FileNotFoundError:
        pass
    return _Scan(
        lines=lines, commands=commands, matching=tuple(matching), first=tuple(head), torn=not last.endswith(b"\n")
    )


def _recorded_at(record: Mapping[str, Any]) -> float:
    """When the record was appended (older records: when the push ended, or began): what retention ages by."""
    for field in ("recorded_at", "ended_at", "started_at"):
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _write_all(fd: int, data: bytes) -> None:
    """One write() for the whole record (O_APPEND puts it at the end as one piece); a short write, which a full
    disk can cause, goes on from where it stopped rather than leave half a record."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        if written == 0:
            raise OSError(errno.EIO, "wrote nothing")
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    """A new or renamed file survives a crash once its folder's entry is on disk too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_ref(text: str) -> ObjectRef:
    kind, _, rest = text.partition("/")
    namespace, _, name = rest.rpartition("/")
    return ObjectRef(kind=kind, namespace=namespace, name=name)


class SessionStore:
    """Active specs and the finished history, as files; every write is atomic (temp file, rename)."""

    def __init__(self, directory: Path, *, retention: Retention | None = None) -> None:
        self.directory = directory
        self.history_file = History(directory, retention)
        self._lock_fd: int | None = None

    def take_lock(self) -> None:
        """Become the one app that owns this folder; SpoolError "fluxmon is already running" names the holder."""
        if self._lock_fd is not None:
            return
        self._ready()
        self._lock_fd = hold_lock(
            self.directory / ".lock", busy="already keeps its sessions in {folder}; stop it first"
        )

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def save_active(self, spec: SessionSpec) -> None:
        self._ready()
        _atomic_write(self.directory / "active" / f"{spec.id}.json", json.dumps(spec_record(spec)))

    def load_active(self) -> list[SessionSpec]:
        specs = []
        for path in sorted((self.directory / "active").glob("*.json")):
            try:
                specs.append(spec_from_record(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable session %s: %s", path.name, exc)
        return specs

    def untell(self, push_id: str) -> None:
        """The push has its outcome, and nobody has told the user yet (see `told`); nothing when it was told: a
        push resumed after a restart decides its outcome again, and must not be told twice."""
        if not _marker_name(push_id) or self.was_told(push_id):
            return
        self._ready()
        (self.directory / UNTOLD / push_id).touch(mode=0o600)

    def finish(self, push: PushSnapshot) -> None:
        """Move a settled push from active to the history (its outcome was marked untold when it was decided)."""
        self.record(push, follower=OWNER)
        (self.directory / "active" / f"{push.id}.json").unlink(missing_ok=True)

    def record(self, push: PushSnapshot, *, follower: str) -> bool:
        """Append the push's outcome to the history, as `follower` (OWNER, "wait", "watch") followed it; False when
        the history has it already (see `is_new`). Safe while other processes append. Raises HistoryError."""
        return self._append({**push_record(push), "follower": follower})

    def record_command(self, record: Mapping[str, Any]) -> bool:
        """Append a command's result (`command_record`) beside its push's record; False when the history has it
        already. Safe while other processes append. Raises HistoryError."""
        return self._append(record)

    def _append(self, record: Mapping[str, Any]) -> bool:
        try:
            self._ready()
            kept = self.history_file.append({**record, "recorded_at": time.time()})
        except OSError as exc:
            raise HistoryError(f"cannot write {self.history_file.path}: {exc.strerror or exc}") from exc
        if kept:
            for marker in [*(self.directory / UNTOLD).glob("*"), *(self.directory / TOLD).glob("*")]:
                # Gone from the history, so too old to tell; a push still followed is not in it yet.
                if marker.name not in kept and not (self.directory / "active" / f"{marker.name}.json").exists():
                    marker.unlink(missing_ok=True)
        return kept is not None

    def untold(self, limit: int = HISTORY_LIMIT) -> list[PushSnapshot]:
        """Settled pushes whose outcome nobody has told the user yet, oldest first."""
        waiting = {path.name for path in (self.directory / UNTOLD).glob("*")}
        return [push for push in reversed(self.recent(limit)) if push.id in waiting]

    def told(self, session_id: str) -> None:
        """The outcome went out (or was deliberately not sent): never again, also after a restart that resumes the
        push before it is settled (and so before it is in the history). Safe from any thread."""
        if not _marker_name(session_id):
            return
        self._ready()
        (self.directory / TOLD / session_id).touch(mode=0o600)
        (self.directory / UNTOLD / session_id).unlink(missing_ok=True)

    def was_told(self, push_id: str) -> bool:
        return _marker_name(push_id) and (self.directory / TOLD / push_id).exists()

    def recent(self, limit: int = 10) -> list[PushSnapshot]:
        """The newest settled pushes first; a record this version cannot read is skipped."""
        pushes = []
        for record in self.history(limit):
            try:
                pushes.append(push_from_record(record))
            except (AttributeError, KeyError, TypeError, ValueError) as exc:  # valid JSON, not a push's shape
                log.warning("skipping unreadable history record %s: %s", record.get("id", "?"), exc)
        return pushes

    def history(self, limit: int = 10) -> list[Mapping[str, Any]]:
        """The newest pushes first, one record each, in the current shape (a few more lines are read than asked
        for: another follower's record of a push may stand beside the tray's, and its commands' records)."""
        try:
            records = self.history_file.read(tail=4 * limit + 10)
        except HistoryError as error:
            log.warning("%s", error)
            return []
        return list(reversed(records))[:limit]

    def save_pause(self, until: datetime | None) -> None:
        """Remember a pause (None: not paused); the tray reads it back at its next start."""
        self._ready()
        if until is None:
            (self.directory / PAUSE_FILE).unlink(missing_ok=True)
        else:
            _atomic_write(self.directory / PAUSE_FILE, json.dumps({"until": until.isoformat()}))

    def load_pause(self, now: datetime) -> datetime | None:
        """The pause still running at `now`, or None (none, over, or unreadable: then notifications go out)."""
        try:
            until = datetime.fromisoformat(
                json.loads((self.directory / PAUSE_FILE).read_text(encoding="utf-8"))["until"]
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring an unreadable %s: %s", PAUSE_FILE, exc)
            return None
        return until if until > now and until.tzinfo is None else None

    def _ready(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)  # ~/.local/state may not exist yet
        ensure_private_dir(self.directory)
        ensure_private_dir(self.directory / "active")
        ensure_private_dir(self.directory / UNTOLD)
        ensure_private_dir(self.directory / TOLD)


def _atomic_write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


def _marker_name(push_id: str) -> bool:
    """Whether a push id can name a marker file (ids are checked where they come in; this is the last guard)."""
    return bool(push_id) and "/" not in push_id and not push_id.startswith(".")
