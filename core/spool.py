"""The spool: where git hooks drop session files and the app picks them up.

The spool decouples the push (which must never wait for us) from the app (which may not be running). Files are
written atomically (a dot-named temp file, then rename), so a reader never sees half a file from us. The reader
trusts nothing it finds: every file is checked (type, owner, size, JSON, schema) and anything wrong is moved to
`rejected/` with one log line, never raised.

Layout of a spool directory (private to the user, 0700):
    <id>.json        a session request, waiting
    .incoming/       where writers create files before renaming them in (a file written in place may be read
                     half-written, and rejected)
    claimed/         files this instance has taken and not yet handed over (retried at the next start)
    rejected/        files that failed validation, kept for the user to look at
    .lock            held (flock) by the one instance that reads this spool; holds its pid
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from fluxmon.core.errors import SpoolError
from fluxmon.core.objects import FLUX_KINDS
from fluxmon.core.plan import check_remote_url, normalize_remote_url
from fluxmon.core.redact import redact_url
from fluxmon.core.text import display_line

log = logging.getLogger("fluxmon.spool")


class _DropStopRace(logging.Filter):
    """watchdog logs an ERROR when an event arrives while its inotify emitter is being stopped.

    The event is for a reader that is going away, so it is no error of ours; every other watchdog message passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("InotifyEmitter.queue_events() called when the thread is inactive")


logging.getLogger("watchdog.observers.inotify").addFilter(_DropStopRace())

SCHEMA = "fluxmon.session/v1"
_CREATED_AT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?Z")
"""RFC 3339 in UTC, to the second or the microsecond: `2026-11-25T19:00:51Z`, `2026-11-25T19:00:51.250000Z`."""
ORDERING_STEP_SECONDS = 1e-6
"""How much later than the previous file the reader counts a file that claims to be older (or as old)."""
MAX_SESSION_BYTES = 64 * 1024
"""A session file is a few KB; anything larger is not ours (or is hostile)."""
REMEMBERED_REFS = 1024
"""How many refs the reader remembers the last delivered commit of, to drop copies of a session file."""
MAX_CHANGED_PATHS = 200
"""Changed paths beyond this many are only counted, to keep session files small."""
STOP_TIMEOUT_SECONDS = 5.0

_SESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json$")
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
REF_KINDS = ("branch", "tag", "ref")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and its parent) 0700 if needed, and refuse it if it is a symlink or another user's.

    A directory of ours that is readable by others is tightened to 0700, since session files name repos and
    commits that the user may not want to share.
    """
    for directory in (path.parent, path):
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except FileExistsError as exc:
            raise SpoolError(f"{directory} exists and is not a directory") from exc
        except OSError as exc:
            raise SpoolError(f"cannot create {directory}: {exc.strerror}") from exc
        info = directory.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise SpoolError(f"{directory} is a symlink; refusing to use it (remove it, fluxmon recreates it)")
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolError(f"{directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise SpoolError(f"{directory} is owned by uid {info.st_uid}, not by you; refusing to use it")
        if stat.S_IMODE(info.st_mode) & 0o077:
            directory.chmod(0o700)
    return path


def write_session(spool_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write one session record atomically into the spool; returns the final path."""
    ensure_private_dir(spool_dir)
    session = parse_session(record)  # never spool something our own reader would reject
    data = json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")
    if len(data) > MAX_SESSION_BYTES:
        raise SpoolError(f"session {session.id} is {len(data)} bytes, over the {MAX_SESSION_BYTES} limit")
    # maildir-style: the file is written in an unwatched subfolder of the same filesystem and renamed in, so the
    # reader sees it appear whole, and the observer reports one move-in at once (a rename inside the watched
    # folder would be held back by watchdog for up to 0.5 s while it pairs the two halves of the move).
    incoming = ensure_private_dir(spool_dir / ".incoming")
    temp = incoming / f"{session.id}.tmp"
    final = spool_dir / f"{session.id}.json"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temp.rename(final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRequest:
    """A validated session file: one pushed ref, to be followed until Flux has deployed it (or not)."""

    id: str
    push_id: str
    created_at: str
    repo: str
    remote_name: str
    remote_url: str
    ref_kind: str
    ref_name: str
    remote_ref: str
    old_sha: str
    new_sha: str
    forced: bool | None
    confirmed: bool
    confirmed_by: str
    changed_paths: tuple[str, ...] | None
    changed_path_count: int | None
    subject: str
    author: str
    settings: PushSettings

    @property
    def branch(self) -> str:
        return self.ref_name if self.ref_kind == "branch" else ""


def parse_session(data: Any) -> SessionRequest:
    """Validate a decoded session file against the v1 schema; raises ValueError naming the field at fault."""
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"unknown schema {data.get('schema')!r} (this fluxmon reads {SCHEMA})")
    remote = _field(data, "remote", Mapping)
    ref = _field(data, "ref", Mapping)
    changes = _field(data, "changes", Mapping)
    commit = _field(data, "commit", Mapping)
    ref_kind = _field(ref, "kind", str, where="ref")
    if ref_kind not in REF_KINDS:
        raise ValueError(f"ref.kind: expected one of {', '.join(REF_KINDS)}, got {ref_kind!r}")
    new_sha = _field(ref, "new", str, where="ref")
    old_sha = _field(ref, "old", str, where="ref")
    for name, sha in (("ref.new", new_sha), ("ref.old", old_sha)):
        if not _SHA.match(sha):
            raise ValueError(f"{name}: not a full commit sha")
    paths = changes.get("paths")
    if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
        raise ValueError("changes.paths: expected a list of strings or null")
    count = changes.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError("changes.count: expected a non-negative integer or null")
    forced = ref.get("forced")
    if forced is not None and not isinstance(forced, bool):
        raise ValueError("ref.forced: expected true, false or null")
    created_at = _field(data, "created_at", str)
    if created_at_seconds(created_at) is None:
        raise ValueError(f"created_at: expected a UTC time like 2026-11-25T19:00:51Z, got {created_at[:40]!r}")
    settings = _parse_settings(_field(data, "config", Mapping))
    session_id = _field(data, "id", str)
    if not _SESSION_NAME.match(f"{session_id}.json"):
        raise ValueError("id: only letters, digits, '.', '_' and '-' are allowed")
    url = _field(remote, "url", str, where="remote")
    if redact_url(url) != url:
        raise ValueError("remote.url: carries credentials")
    try:
        check_remote_url(url)
    except ValueError as exc:
        raise ValueError(f"remote.url: {exc}") from None
    return SessionRequest(
        id=session_id,
        push_id=_field(data, "push_id", str),
        created_at=created_at,
        repo=_field(data, "repo", str),
        remote_name=_field(remote, "name", str, where="remote"),
        remote_url=url,
        ref_kind=ref_kind,
        ref_name=_field(ref, "name", str, where="ref"),
        remote_ref=_field(ref, "remote_ref", str, where="ref"),
        old_sha=old_sha,
        new_sha=new_sha,
        forced=forced,
        confirmed=_field(data, "confirmed", bool),
        confirmed_by=_field(data, "confirmed_by", str),
        changed_paths=tuple(paths) if paths is not None else None,
        changed_path_count=count,
        subject=_field(commit, "subject", str, where="commit"),
        author=_field(commit, "author", str, where="commit"),
        settings=settings,
    )


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "enabled": (bool,),
    "context": (str,),
    "timeout_seconds": (int, float),
    "verbosity": (str,),
    "monitor_types": (list,),
    "reconcile": (bool,),
    "notify_on": (list,),
    "ignore_remotes": (list,),
    "ignore_branches": (list,),
}
"""The `config` keys a session file may carry (core.config.Config.as_record), with their JSON types."""
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
"""A session longer than a week is a typo, not a deployment."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PushSettings:
    """The settings the hook recorded for the push's repo, typed; None means "the reader's default applies"."""

    timeout_seconds: float | None = None
    reconcile: bool | None = None
    monitor_types: tuple[str, ...] | None = None


def _parse_settings(config: Mapping[str, Any]) -> PushSettings:
    """The session file's `config`, typed here at the spool's edge; a mistyped setting is rejected with its name,
    rather than failing the session later. Keys the engine does not use (notify_on, ...) are checked and left."""
    for key, value in config.items():
        expected = _CONFIG_TYPES.get(str(key))
        if expected is None or value is None:
            continue  # a newer writer's key, or an unset one: the reader's default applies
        if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
            names = "number" if float in expected else expected[0].__name__
            raise ValueError(f"config.{key}: expected {names}, got {type(value).__name__}")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise ValueError(f"config.{key}: expected a list of strings")
    timeout = config.get("timeout_seconds")
    if timeout is not None and not 0 < float(timeout) <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"config.timeout_seconds: expected more than 0 and at most a week, got {timeout!r}")
    unknown = [kind for kind in config.get("monitor_types") or () if kind not in FLUX_KINDS]
    if unknown:
        raise ValueError(f"config.monitor_types: not a Flux kind: {', '.join(map(repr, unknown[:5]))}")
    kinds = config.get("monitor_types")
    reconcile = config.get("reconcile")
    return PushSettings(
        timeout_seconds=float(timeout) if timeout else None,
        reconcile=reconcile if isinstance(reconcile, bool) else None,
        monitor_types=tuple(kinds) if kinds else None,
    )


def created_at_text(seconds: float) -> str:
    """A session file's `created_at`, to the microsecond: back-to-back pushes in one second stay in order."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def created_at_seconds(text: str) -> float | None:
    """Seconds since the epoch of a `created_at` (with or without a fraction of a second), or None."""
    match = _CREATED_AT.fullmatch(text)
    if match is None:
        return None
    whole, fraction = match.groups()
    try:
        moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp() + float(fraction or 0)


def _field(data: Mapping[str, Any], key: str, expected: type, *, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in data:
        raise ValueError(f"{name}: missing")
    value = data[key]
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ValueError(f"{name}: expected {expected.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class LockHolder:
    """Who reads a spool: the pid and start time written into its lock file."""

    pid: int
    since: str


def lock_holder(spool_dir: Path) -> LockHolder | None:
    """The instance that reads `spool_dir` now, or None when no app is running on it."""
    lock_path = spool_dir / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_lock(path: Path, *, busy: str) -> int:
    """Take the flock at `path` for this process (writing its pid and start time in); returns the fd to close.

    A lock held elsewhere raises SpoolError "fluxmon is already running", naming the holder; `busy` ends that
    sentence, with `{folder}` for the lock's folder.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise SpoolError(
            f"another fluxmon instance (pid {holder.pid}, since {holder.since or 'unknown'}) "
            + busy.format(folder=path.parent),
            title="fluxmon is already running",
        ) from None
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.pwrite(fd, f"{os.getpid()} {started}\n".encode(), 0)
    return fd


def _read_holder(fd: int) -> LockHolder:
    text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    pid = int(text[0]) if text and text[0].isdigit() else 0
    return LockHolder(pid=pid, since=text[1] if len(text) > 1 else "")


class _SpoolEvents(FileSystemEventHandler):
    """Only filters and enqueues: parsing happens on the reader's own thread, never on watchdog's."""

    def __init__(self, enqueue: Callable[[Path], None]) -> None:
        self._enqueue = enqueue

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            path = Path(os.fsdecode(event.dest_path))
        elif isinstance(event, (FileCreatedEvent, FileClosedEvent)):
            # Writers rename whole files in (reported as created); a duplicate event finds the file already
            # claimed and is dropped.
            path = Path(os.fsdecode(event.src_path))
        else:
            return
        if path.name.endswith(".json") and not path.name.startswith("."):
            self._enqueue(path)


class SpoolReader:
    """Hands each session file in a spool to `on_session` exactly once, also across app instances and restarts.

    Start-up scans what is already there (sessions dropped while the app was down are not lost); after that a
    watchdog observer reports new files. One named worker thread claims, validates and delivers them in order.
    """

    def __init__(
        self,
        spool_dir: Path,
        *,
        on_session: Callable[[SessionRequest], None],
        on_rejected: Callable[[str, str], None] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self._on_session = on_session
        self._on_rejected = on_rejected
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._observer: Any = None
        self._lock_fd: int | None = None
        self._last_created_at = 0.0
        """The (clamped) created_at of the last file received: the next one is newer."""
        self._delivered: dict[tuple[str, str, str], str] = {}
        """The last commit delivered per (remote, ref kind, ref name), oldest first: copies of it are dropped."""

    def start(self) -> None:
        """Take the spool's lock, then start watching; raises SpoolError if another instance holds it."""
        ensure_private_dir(self.spool_dir)
        for sub in ("claimed", "rejected"):
            ensure_private_dir(self.spool_dir / sub)
        self.take_lock()
        try:
            self._observer = Observer()
            self._observer.name = "fluxmon-spool-observer"
            self._observer.schedule(_SpoolEvents(self._queue.put), str(self.spool_dir), recursive=False)
            self._observer.start()
            # Scan after the observer is running, so nothing that lands in between is missed; duplicates are
            # harmless because a file is claimed by rename, which succeeds once.
            for leftover in sorted((self.spool_dir / "claimed").glob("*.json")):
                self._queue.put(leftover)
            for waiting in sorted(self.spool_dir.glob("*.json")):
                self._queue.put(waiting)
            self._worker = threading.Thread(
                target=self._run, args=(self._stop,), name="fluxmon-spool-reader", daemon=True
            )
            self._worker.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop watching, finish the file in hand, and release the lock. Files not yet taken stay for next time."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(STOP_TIMEOUT_SECONDS)
            self._observer = None
        self._stop.set()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(STOP_TIMEOUT_SECONDS)
            self._worker = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def take_lock(self) -> None:
        """Become the one reader of this spool (an app's single-instance check); `start()` takes it if needed."""
        if self._lock_fd is not None:
            return
        ensure_private_dir(self.spool_dir)
        self._lock_fd = hold_lock(
            self.spool_dir / ".lock",
            busy="is already reading {folder}; stop it first, or give this one its own FLUXMON_SPOOL_DIR",
        )

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            path = self._queue.get()
            if path is None:
                return
            try:
                self._consume(path)
            except Exception:
                # One bad file must never stop the reader; the file stays where it is for the next start.
                log.exception("could not process spool file %s", path.name)

    def _consume(self, path: Path) -> None:
        claimed = self.spool_dir / "claimed" / path.name
        if path != claimed and not self._claim(path, claimed):
            return
        try:
            session = parse_session(_decode(_read_checked(claimed)))
        except (ValueError, OSError) as exc:
            self._reject(claimed, str(exc))
            return
        session = _received(session, now=time.time(), previous=self._last_created_at)
        self._last_created_at = created_at_seconds(session.created_at) or self._last_created_at
        pushed = (normalize_remote_url(session.remote_url, base_dir=session.repo or None), session.ref_kind)
        key = (*pushed, session.ref_name)
        if self._delivered.get(key) == session.new_sha:
            # The same commit again on the same ref: a copy (or a thousand), not a new push; one session is enough.
            log.debug("dropped %s: the session for %s@%s is already delivered", path.name, key[2], session.new_sha)
            claimed.unlink(missing_ok=True)
            return
        self._on_session(session)
        self._delivered[key] = session.new_sha
        while len(self._delivered) > REMEMBERED_REFS:
            self._delivered.pop(next(iter(self._delivered)))
        claimed.unlink(missing_ok=True)

    @staticmethod
    def _claim(path: Path, claimed: Path) -> bool:
        """Take `path` into claimed/, atomically; False if someone else (or a duplicate event) took it first.

        A hard link plus unlink, not a rename: a rename out of the watched folder is an unpaired IN_MOVED_FROM,
        which watchdog holds for 0.5 s and which delays every event queued behind it.
        """
        try:
            os.link(path, claimed, follow_symlinks=False)
        except (FileNotFoundError, FileExistsError):
            return False  # already taken: a duplicate event, or another reader linked it first
        except OSError:
            # Linking another user's file can be refused (fs.protected_hardlinks); such a file is rejected anyway.
            try:
                path.rename(claimed)
            except FileNotFoundError:
                return False
            return True
        path.unlink(missing_ok=True)
        return True

    def _reject(self, path: Path, why: str) -> None:
        target = self.spool_dir / "rejected" / path.name
        if target.exists() or target.is_symlink():
            target = target.with_name(f"{path.stem}.{time.time_ns()}.json")
        path.rename(target)
        shown_name, shown_why = display_line(path.name), display_line(why)
        log.warning("rejected spool file %s: %s (moved to %s)", shown_name, shown_why, target.parent)
        if self._on_rejected is not None:
            self._on_rejected(path.name, why)


def _received(session: SessionRequest, *, now: float, previous: float) -> SessionRequest:
    """The request as the reader received it: its `created_at` clamped after the previous file's and up to now.

    Sessions are then ordered as the reader received them, whatever clock wrote them, and even when several
    share a second. A `created_at` in the future would otherwise never time out, and stay the "newest" session
    in the tray for good.
    """
    claimed = created_at_seconds(session.created_at) or now
    clamped = max(min(claimed, now), previous + ORDERING_STEP_SECONDS)
    if clamped == claimed:
        return session
    shown = created_at_text(clamped)
    log.info("session %s claims to be created at %s; counting from %s", session.id, session.created_at, shown)
    return replace(session, created_at=shown)


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("malformed JSON: nested too deeply") from exc


def _read_checked(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of ours within the size limit; raises ValueError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("is a symlink") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        if info.st_uid != os.geteuid():
            raise ValueError(f"is owned by uid {info.st_uid}, not by this user")
        if info.st_size > MAX_SESSION_BYTES:
            raise ValueError(f"is {info.st_size} bytes, over the {MAX_SESSION_BYTES}-byte limit")
        data = handle.read(MAX_SESSION_BYTES + 1)
    if len(data) > MAX_SESSION_BYTES:
        raise ValueError(f"is over the {MAX_SESSION_BYTES}-byte limit")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("is not UTF-8 text") from exc
    return data
