"""Where sessions are kept: the active ones (resumed after a restart) and a history of finished ones.

Layout under `$XDG_STATE_HOME/fluxmon` (default ~/.local/state/fluxmon), private to the user:
    active/<id>.json     the spec of each push still being followed
    history.jsonl        one record per settled push (every cluster's outcome), newest last, trimmed to HISTORY_LIMIT
    untold/<id>          a push whose outcome the user has not been told yet (made as the outcome is decided,
                         before anyone is told; removed once the notification went out or was deliberately
                         skipped), so that a tray killed in between tells it at its next start
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
from fluxmon.core.push import PushSnapshot
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


def push_record(push: PushSnapshot) -> dict[str, Any]:
    """The stable JSON shape of a push (`fluxmon wait --json`, the history file): the push's outcome at the top,
    every followed object in `resources` (each naming its `context`), and each cluster's own outcome in
    `clusters`. With one cluster, the top level reads as that cluster's session always did."""
    return {
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
        "notes": [note for cluster in push.clusters for note in cluster.notes],
        "resources": [_resource_record(r, cluster.context) for cluster in push.clusters for r in cluster.resources],
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


def _resource_record(r: ResourceStatus, context: str) -> dict[str, Any]:
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

    def untell(self, push_id: str) -> None:
        """The push has its outcome, and nobody has told the user yet (see `told`)."""
        if "/" in push_id or push_id.startswith("."):
            return
        self._ready()
        (self.directory / UNTOLD / push_id).touch(mode=0o600)

    def finish(self, push: PushSnapshot) -> None:
        """Move a settled push from active to the history (its outcome was marked untold when it was decided)."""
        self._ready()
        with (self.directory / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(push_record(push)) + "\n")
        (self.directory / "active" / f"{push.id}.json").unlink(missing_ok=True)
        self._trim()

    def untold(self, limit: int = HISTORY_LIMIT) -> list[PushSnapshot]:
        """Settled pushes whose outcome nobody has told the user yet, oldest first."""
        waiting = {path.name for path in (self.directory / UNTOLD).glob("*")}
        return [push for push in reversed(self.recent(limit)) if push.id in waiting]

    def told(self, session_id: str) -> None:
        """The outcome went out (or was deliberately not sent): never again. Safe from any thread."""
        if "/" in session_id or session_id.startswith("."):
            return
        (self.directory / UNTOLD / session_id).unlink(missing_ok=True)

    def recent(self, limit: int = 10) -> list[PushSnapshot]:
        """The newest settled pushes first; a record this version cannot read is skipped."""
        pushes = []
        for record in self.history(limit):
            try:
                pushes.append(push_from_record(record))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping unreadable history record %s: %s", record.get("id", "?"), exc)
        return pushes

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
