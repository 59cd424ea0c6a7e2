"""Where sessions are kept: the active ones (resumed after a restart) and a history of finished ones.

Layout under `$XDG_STATE_HOME/fluxmon` (default ~/.local/state/fluxmon), private to the user:
    active/<id>.json     the spec of each session still being followed
    history.jsonl        one record per finished session, newest last, trimmed to HISTORY_LIMIT
    untold/<id>          a finished session whose outcome the user has not been told yet (made before its history
                         record, removed once the notification went out or was deliberately skipped), so that a
                         tray killed in between tells it at its next start
    pause.json           until when the user paused notifications (so that "until tomorrow" survives a restart)
    .lock                held (flock) by the one tray that owns this folder; holds its pid

The folder is per user whatever the environment (the spool moves with XDG_RUNTIME_DIR, this does not), so its
lock, not the spool's, is what keeps a user to one tray: two would resume the same sessions and notify twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from fluxmon.core.hints import Hint
from fluxmon.core.objects import ObjectRef
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.spool import ensure_private_dir, hold_lock
from fluxmon.core.verdict import Phase

log = logging.getLogger("fluxmon.store")

HISTORY_LIMIT = 200
UNTOLD = "untold"
PAUSE_FILE = "pause.json"


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


def snapshot_record(snapshot: SessionSnapshot) -> dict[str, Any]:
    """The stable JSON shape of a snapshot (`fluxmon wait --json`, the history file)."""
    return {
        "id": snapshot.id,
        "state": snapshot.state.value,
        "message": snapshot.message,
        "commit": snapshot.commit,
        "branch": snapshot.branch,
        "remote": snapshot.remote,
        "subject": snapshot.subject,
        "repo": snapshot.repo,
        "started_at": snapshot.started_at,
        "ended_at": snapshot.ended_at,
        "elapsed_seconds": round(snapshot.elapsed, 3),
        "failed": str(snapshot.failed) if snapshot.failed else None,
        "notes": list(snapshot.notes),
        "resources": [
            {
                "kind": r.ref.kind,
                "namespace": r.ref.namespace,
                "name": r.ref.name,
                "role": r.role,
                "phase": r.phase.value,
                "reason": r.reason,
                "message": r.message,
                "revision": r.revision,
                "seconds_in_phase": {k: round(v, 3) for k, v in r.seconds_in_phase.items()},
                "depends_on": [{"ref": str(ref), "phase": phase.value} for ref, phase in r.depends_on],
                "parent": str(r.parent) if r.parent else None,
                "applied_by": str(r.applied_by) if r.applied_by else None,
                "error": r.error,
                "hint": asdict(r.hint) if r.hint else None,
            }
            for r in snapshot.resources
        ],
    }


def snapshot_from_record(record: Mapping[str, Any]) -> SessionSnapshot:
    """A finished session back from its history record, for the tray's menu and details after a restart.

    Events are not kept in the history; the error text they gave is (`error`), so it stands in as the message.
    """
    resources = tuple(
        ResourceStatus(
            ref=ObjectRef(kind=r["kind"], namespace=r["namespace"], name=r["name"]),
            role=Role(r["role"]),
            phase=Phase(r["phase"]),
            reason=r["reason"],
            message=r.get("error") or r["message"],
            revision=r["revision"],
            since=record["started_at"],
            seconds_in_phase=r.get("seconds_in_phase", {}),
            depends_on=tuple((_parse_ref(d["ref"]), Phase(d["phase"])) for d in r.get("depends_on", [])),
            parent=_parse_ref(r["parent"]) if r.get("parent") else None,
            applied_by=_parse_ref(r["applied_by"]) if r.get("applied_by") else None,
            hint=Hint(**r["hint"]) if r.get("hint") else None,
        )
        for r in record["resources"]
    )
    return SessionSnapshot(
        id=record["id"],
        state=SessionState(record["state"]),
        message=record["message"],
        commit=record["commit"],
        branch=record["branch"],
        remote=record["remote"],
        subject=record["subject"],
        repo=record["repo"],
        started_at=record["started_at"],
        updated_at=record["ended_at"] or record["started_at"],
        ended_at=record["ended_at"],
        resources=resources,
        notes=tuple(record.get("notes", ())),
        failed=_parse_ref(record["failed"]) if record.get("failed") else None,
    )


def _parse_ref(text: str) -> ObjectRef:
    kind, _, rest = text.partition("/")
    namespace, _, name = rest.rpartition("/")
    return ObjectRef(kind=kind, namespace=namespace, name=name)


class SessionStore:
    """Active specs and the finished history, as files; every write is atomic (temp file, rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
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

    def finish(self, snapshot: SessionSnapshot) -> None:
        """Move a finished session from active to the history, as not yet told (see `told`)."""
        self._ready()
        (self.directory / UNTOLD / snapshot.id).touch(mode=0o600)
        with (self.directory / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(snapshot_record(snapshot)) + "\n")
        (self.directory / "active" / f"{snapshot.id}.json").unlink(missing_ok=True)
        self._trim()

    def untold(self, limit: int = HISTORY_LIMIT) -> list[SessionSnapshot]:
        """Finished sessions whose outcome nobody has told the user yet, oldest first."""
        waiting = {path.name for path in (self.directory / UNTOLD).glob("*")}
        return [snapshot for snapshot in reversed(self.recent(limit)) if snapshot.id in waiting]

    def told(self, session_id: str) -> None:
        """The outcome went out (or was deliberately not sent): never again. Safe from any thread."""
        if "/" in session_id or session_id.startswith("."):
            return
        (self.directory / UNTOLD / session_id).unlink(missing_ok=True)

    def recent(self, limit: int = 10) -> list[SessionSnapshot]:
        """The newest finished sessions first, as snapshots; a record this version cannot read is skipped."""
        snapshots = []
        for record in self.history(limit):
            try:
                snapshots.append(snapshot_from_record(record))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping unreadable history record %s: %s", record.get("id", "?"), exc)
        return snapshots

    def history(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest finished sessions first."""
        path = self.directory / "history.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return list(reversed(records))

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

    def _trim(self) -> None:
        path = self.directory / "history.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > 2 * HISTORY_LIMIT:
            _atomic_write(path, "\n".join(lines[-HISTORY_LIMIT:]) + "\n")
            kept = {record["id"] for record in self.history(HISTORY_LIMIT) if isinstance(record, dict)}
            for marker in (self.directory / UNTOLD).glob("*"):
                if marker.name not in kept:  # gone from the history: too old to tell
                    marker.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)
