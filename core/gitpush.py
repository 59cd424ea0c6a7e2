"""Turning a `git push` into session files, once git has said whether the push went through.

Git has no post-push hook. `pre-push` runs before the transfer, so it cannot know whether the push will be
accepted. What it can do is leave a pending record and start this confirmer, which waits for the `git push`
process to exit and then decides each pushed ref:

- If the remote has a fetch refspec that maps the pushed ref to a remote-tracking ref, git updates that ref
  after a successful push, and notes it in the ref's reflog ("update by push", from the old sha to the new). That
  update, from the sha the remote had to the pushed one, confirms the push. Matching both shas keeps
  back-to-back pushes apart, and an older push of the same commit out. With no such update, the remote decides
  (below): a rejected push or a `--dry-run` updates nothing, and the remote does not have the sha.
- Otherwise (a push to a URL, a tag, a refspec with no tracking ref) `git ls-remote` asks the URL that was pushed
  to (a remote's `pushurl` when it has one, not its fetch `url`, which may be a mirror that lags). The pushed sha
  there confirms it; another sha means rejected; no answer gives a session marked unconfirmed, which the
  monitor confirms when the sha shows up in the Flux source.
- Deletions deploy nothing and never become sessions; nor do `refs/remotes/*`, which `push --mirror` sends.
- An annotated tag is followed by the commit it points to (`<sha>^{commit}`): that is what Flux checks out, and
  what its revision `<tag>@sha1:<commit>` names.

Each `git push` process gets its own pending record, named after its pid: the confirmer waits for that process to
exit before it decides. Every git call takes an argument list (never a shell string), and URLs are redacted
before they are written.

Reading the reflog afterwards takes the place of a `reference-transaction` hook (which older versions installed):
git runs that hook twice for every ref update of every command (a commit, a checkout, each step of a rebase), so
it cost every `git commit` two shell starts, for the sake of pushes.

One confirmer serves a repo at a time (`serve_pending`), so that a burst of pushes costs one Python start, not one
each: pre-push starts it only when none is running, and a running one takes every record that arrives while it
runs. It holds a lock (`confirmer.lock`) and shows the hooks its pid and start time (`confirmer`), which it removes
*before* it lets go of the lock and looks one last time: a record that a hook wrote while it still saw a running
confirmer is therefore always read, by this one or by the next. The remote's name and URL are written in the
record only when they hold no credentials; a push to a URL with a token gets a confirmer of its own
(`confirm_push`), which pre-push hands the URL in its environment, so that it never reaches the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxmon.core.config import Config, load_config
from fluxmon.core.errors import FluxmonError, GitError
from fluxmon.core.git import run_git
from fluxmon.core.paths import spool_dir as default_spool_dir
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import short_sha
from fluxmon.core.spool import MAX_CHANGED_PATHS, SCHEMA, created_at_text, write_session

log = logging.getLogger("fluxmon.hooks")

ZERO_SHA = "0" * 40
LS_REMOTE_TIMEOUT_SECONDS = 15.0
MAX_WAIT_FOR_PUSH_SECONDS = 3600.0
"""A push that takes longer than an hour is left alone: its record is dropped as stale."""
PENDING_MAGIC = "fluxmon-pending 3"
PENDING_MAGICS = (PENDING_MAGIC, "fluxmon-pending 2", "fluxmon-pending 1")
"""Records of hooks installed by an older fluxmon: version 2 holds neither remote nor URL (its confirmer has them),
version 1 carries both."""
PENDING_END = "end"
"""The last line of a version 3 record: a record without it was cut short (a hook interrupted while writing)."""
RECORDED_ENVIRONMENT = ("FLUXMON_SPOOL_DIR", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "HOME")
"""What pre-push notes of its environment for a shared confirmer (which may have been started by another push):
all that decides the spool, the user's config.toml and git's global config."""
GIT_ENVIRONMENT = ("HOME", "XDG_CONFIG_HOME")
OWN_SUFFIX = ".own.push"
"""A record whose push has a confirmer of its own (its URL holds credentials): the shared confirmer leaves it."""
CONFIRMER_FILE = "confirmer"
"""`<pid> <start time>` of the repo's running shared confirmer, in `<git dir>/fluxmon/`, for pre-push to read."""
CONFIRMER_LOCK = "confirmer.lock"
RESCAN_SECONDS = 0.05
"""How often a confirmer that waits for a push looks for records of newer pushes."""
LINGER_SECONDS = 0.5
"""How long a confirmer waits for another record before it exits: in a run of `git commit && git push`, the next
push comes within this, and finds it running instead of starting Python again."""
PUSHED_REMOTE = "fluxmon-pushed-url"
"""A remote name that exists only in the confirmer's environment, for asking a URL that holds credentials."""
SPOOL_CONFIG_KEY = "fluxmon.spoolDir"
"""A repo's own spool (git config), which wins over the environment's: `fluxmon demo` sets it in its sample repo,
so that pushes made there from any shell reach the demo, whatever that shell's FLUXMON_SPOOL_DIR says."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PushedRef:
    """One line of pre-push's stdin: `<local ref> <local sha> <remote ref> <remote sha>`."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str

    @property
    def is_deletion(self) -> bool:
        return self.local_sha.strip("0") == ""

    @property
    def is_remote_tracking(self) -> bool:
        """`push --mirror` sends the clone's own remote-tracking refs too; they are copies, not deployments."""
        return self.remote_ref.startswith("refs/remotes/")

    @property
    def kind(self) -> str:
        if self.remote_ref.startswith("refs/heads/"):
            return "branch"
        if self.remote_ref.startswith("refs/tags/"):
            return "tag"
        return "ref"

    @property
    def short_name(self) -> str:
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.remote_ref.startswith(prefix):
                return self.remote_ref.removeprefix(prefix)
        return self.remote_ref


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingPush:
    """What pre-push recorded: the remote as git was given it, and the refs about to be pushed."""

    remote: str
    url: str
    repo: Path
    refs: tuple[PushedRef, ...]
    environ: tuple[tuple[str, str], ...] | None = None
    """The pushing shell's RECORDED_ENVIRONMENT (None: the confirmer's own is the pushing shell's)."""

    def paths_environ(self) -> Mapping[str, str]:
        """The environment that decides where fluxmon's files are, as the pushing shell had it."""
        return os.environ if self.environ is None else dict(self.environ)

    def git_environ(self) -> dict[str, str]:
        """What git must see of the pushing shell's environment to read the same global config."""
        return {name: value for name, value in self.environ or () if name in GIT_ENVIRONMENT}


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The confirmer's verdict on one pushed ref."""

    ref: PushedRef
    session: bool
    confirmed: bool = False
    confirmed_by: str = ""
    why: str = ""


def parse_pending(text: str, *, remote: str = "", url: str = "", repo: Path | None = None) -> PendingPush:
    """Parse a pending record; raises ValueError when it is not one (or is truncated).

    `remote`, `url` and `repo`: what a confirmer of the push's own was given by pre-push, in memory (its record
    holds none of them).
    """
    lines = text.splitlines()
    if not lines or lines[0] not in PENDING_MAGICS:
        raise ValueError("not a fluxmon pending record")
    if lines[0] == PENDING_MAGIC and lines[-1] != PENDING_END:
        raise ValueError("pending record cut short")
    fields: dict[str, str] = {}
    environ: list[tuple[str, str]] = []
    refs = []
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if key == "ref":
            parts = value.split()
            if len(parts) == 4:
                refs.append(PushedRef(local_ref=parts[0], local_sha=parts[1], remote_ref=parts[2], remote_sha=parts[3]))
        elif key == "env":
            name, _, setting = value.partition("=")
            if name in RECORDED_ENVIRONMENT:
                environ.append((name, setting))
        elif key and key != PENDING_END:
            fields[key] = value
    remote = remote or fields.get("remote", "")
    where = Path(fields["repo"]) if fields.get("repo") else repo
    if not remote or where is None:
        raise ValueError("pending record lacks remote or repo")
    return PendingPush(
        remote=remote,
        url=url or fields.get("url", ""),
        repo=where.resolve(),
        refs=tuple(refs),
        environ=tuple(environ) if "remote" in fields and lines[0] == PENDING_MAGIC else None,
    )


Update = tuple[str, str, str]
"""`(remote-tracking ref, old sha, new sha)`: one update that git made to a remote-tracking ref after a push."""
PUSH_REFLOG_MESSAGE = "update by push"
REFLOG_TAIL_BYTES = 1 << 16
"""How much of the end of a reflog is read: far more than the entries of any burst of pushes."""


def parse_transactions(text: str) -> set[Update]:
    """The updates in a transaction log that the `reference-transaction` hook of an older fluxmon wrote
    (`<old> <new> <refname>` lines)."""
    updates = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.add((parts[2], parts[0], parts[1]))
    return updates


def parse_reflog(ref: str, text: str) -> set[Update]:
    """The updates by push in the text of a ref's reflog (`<old> <new> <who> <when> <zone>\t<message>` lines)."""
    updates = set()
    for line in text.splitlines():
        entry, _, message = line.partition("\t")
        parts = entry.split(" ", 2)
        if message == PUSH_REFLOG_MESSAGE and len(parts) == 3:
            updates.add((ref, parts[0], parts[1]))
    return updates


def pushed_updates(git_dir: Path, refs: Iterable[str]) -> set[Update]:
    """The updates by push to these remote-tracking refs, from the end of their reflogs.

    They are read as files: remote-tracking refs and their logs live in the common git dir, which a linked
    worktree's git dir names in its `commondir` file. Without a reflog (core.logAllRefUpdates off, or another
    ref store), there is nothing here and the remote decides.
    """
    try:
        common = git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        common = git_dir
    updates: set[Update] = set()
    for ref in refs:
        try:
            with (common / "logs" / ref).open("rb") as reflog:
                size = reflog.seek(0, os.SEEK_END)
                reflog.seek(max(0, size - REFLOG_TAIL_BYTES))
                tail = reflog.read().decode("utf-8", "replace")
        except OSError:
            continue
        updates |= parse_reflog(ref, tail if size <= REFLOG_TAIL_BYTES else tail.partition("\n")[2])
    return updates


def tracking_ref(remote_ref: str, refspecs: Sequence[str]) -> str | None:
    """The remote-tracking ref a fetch refspec maps `remote_ref` to, as git does after a push; None if none."""
    for spec in refspecs:
        spec = spec.removeprefix("+")
        if spec.startswith("^") or ":" not in spec:
            continue
        source, _, destination = spec.partition(":")
        if "*" not in source:
            if source == remote_ref and destination:
                return destination
            continue
        prefix, _, suffix = source.partition("*")
        if remote_ref.startswith(prefix) and remote_ref.endswith(suffix) and len(remote_ref) >= len(prefix + suffix):
            middle = remote_ref[len(prefix) : len(remote_ref) - len(suffix)]
            return destination.replace("*", middle, 1)
    return None


def decide(
    push: PendingPush,
    *,
    refspecs: Sequence[str],
    updates: Collection[Update],
    ls_remote: Callable[[str], str | None],
) -> list[Decision]:
    """Decide each pushed ref (see the module docstring); `ls_remote(ref)` gives the sha there, or None."""
    return [_decide(ref, refspecs=refspecs, updates=updates, ls_remote=ls_remote) for ref in push.refs]


def _decide(
    ref: PushedRef,
    *,
    refspecs: Sequence[str],
    updates: Collection[Update],
    ls_remote: Callable[[str], str | None],
) -> Decision:
    if ref.is_deletion:
        return Decision(ref=ref, session=False, why="deletion")
    if ref.is_remote_tracking:
        return Decision(ref=ref, session=False, why="a remote-tracking ref (push --mirror)")
    tracked = tracking_ref(ref.remote_ref, refspecs)
    if tracked is not None and (tracked, ref.remote_sha, ref.local_sha) in updates:
        return Decision(ref=ref, session=True, confirmed=True, confirmed_by="remote-tracking-ref", why=tracked)
    # No tracking ref, or no update by this push. The latter is usually a rejected push or a dry run, but also a
    # clone whose tracking ref was behind the remote, or that keeps no reflog: the remote decides.
    remote_sha = ls_remote(ref.remote_ref)
    if remote_sha == ref.local_sha:
        return Decision(ref=ref, session=True, confirmed=True, confirmed_by="ls-remote")
    not_updated = f"git did not update {tracked}" if tracked is not None else ""
    if remote_sha is None:
        if tracked is not None:
            return Decision(ref=ref, session=False, why=f"{not_updated}, and the remote did not answer ls-remote")
        return Decision(ref=ref, session=True, why="remote did not answer ls-remote")
    where = f"the remote has {short_sha(remote_sha) or 'nothing'} at {ref.remote_ref}"
    return Decision(
        ref=ref, session=False, why=f"{', '.join(filter(None, (not_updated, where)))}: rejected, or a dry run"
    )


class _RemoteRefs:
    """`git ls-remote` asked once per push, for every ref it sent (a push of fifty tags is one request).

    It asks the URL pushed to (a pushurl, if the remote has one), not the remote's fetch URL.
    """

    def __init__(self, push: PendingPush) -> None:
        self._push = push
        self._answer: dict[str, str] | None = None
        self._failed = False

    def __call__(self, remote_ref: str) -> str | None:
        if self._answer is None and not self._failed:
            self._answer = self._ask()
            self._failed = self._answer is None
        return None if self._answer is None else self._answer.get(remote_ref, "")

    def _ask(self) -> dict[str, str] | None:
        refs = sorted({ref.remote_ref for ref in self._push.refs if not ref.is_deletion})
        where, env = self._push.url or self._push.remote, self._push.git_environ()
        if redact_url(where) != where:
            # A URL with credentials goes to git as configuration in the environment, never as an argument:
            # /proc/<pid>/cmdline is readable by every user of the machine.
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"remote.{PUSHED_REMOTE}.url",
                "GIT_CONFIG_VALUE_0": where,
            }
            where = PUSHED_REMOTE
        try:
            output = run_git(
                ["ls-remote", "--end-of-options", where, *refs],
                cwd=self._push.repo,
                timeout=LS_REMOTE_TIMEOUT_SECONDS,
                env=env,
            )
        except GitError as error:
            log.warning("%s", error.message)
            return None
        answer = {}
        for line in output.splitlines():
            sha, _, name = line.partition("\t")
            if name in refs:  # ls-remote matches patterns by their tail: keep exact names only
                answer[name] = sha.strip()
        return answer


def session_record(
    push: PendingPush,
    decision: Decision,
    *,
    push_id: str,
    remote_url: str,
    config: Config,
    git: Callable[[Sequence[str]], str],
) -> dict[str, Any]:
    """The session file's content for one confirmed ref (the schema is documented in docs/session-file.md)."""
    ref = decision.ref
    commit, subject, author = _commit_of(ref.local_sha, git)
    # A branch holds commits only (git refuses anything else there): only another ref's old tip may need peeling.
    old = ref.remote_sha if ref.kind == "branch" or not ref.remote_sha.strip("0") else peel(ref.remote_sha, git)
    paths, count, forced = _changes(ref, git)
    return {
        "schema": SCHEMA,
        "id": f"{push_id}-{ref.kind}-{uuid.uuid4().hex[:8]}",
        "push_id": push_id,
        "created_at": created_at_text(time.time()),
        "repo": str(push.repo),
        "remote": {"name": push.remote if push.remote != push.url else "", "url": redact_url(remote_url)},
        "ref": {
            "kind": ref.kind,
            "name": ref.short_name,
            "remote_ref": ref.remote_ref,
            "old": old,
            "new": commit,
            "forced": forced,
        },
        "confirmed": decision.confirmed,
        "confirmed_by": decision.confirmed_by,
        "changes": {"paths": paths, "count": count},
        "commit": {"subject": subject, "author": author},
        "config": config.as_record(),
    }


def _commit_of(sha: str, git: Callable[[Sequence[str]], str]) -> tuple[str, str, str]:
    """The commit that `sha` names (the tagged commit for an annotated tag), its subject and its author, from one
    call to git (`log` peels a tag itself); `sha` and no text if this clone cannot tell."""
    try:
        shown = git(["log", "-1", "--format=%H%x00%s%x00%an <%ae>", "--end-of-options", sha])
    except GitError:
        return sha, "", ""
    commit, _, rest = shown.partition("\0")
    subject, _, author = rest.partition("\0")
    return commit.strip() or sha, subject.strip(), author.strip()


def peel(sha: str, git: Callable[[Sequence[str]], str]) -> str:
    """The commit that `sha` names: itself for a commit, the tagged commit for an annotated tag object.

    A sha this clone does not have (the remote's old tip, pushed by someone else) is returned as it is.
    """
    try:
        return git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}"]).strip() or sha
    except GitError:
        return sha


def _changes(ref: PushedRef, git: Callable[[Sequence[str]], str]) -> tuple[list[str] | None, int | None, bool | None]:
    """Changed paths (capped), their count, and whether the push rewrote history; None where unknowable."""
    if ref.remote_sha.strip("0") == "":
        return None, None, False  # a new branch: there is no old tip to compare with
    try:
        listed = git(["diff", "--name-only", "--no-renames", ref.remote_sha, ref.local_sha]).splitlines()
    except GitError:
        return None, None, None  # the old tip is not in this clone (someone else pushed it)
    try:
        git(["merge-base", "--is-ancestor", ref.remote_sha, ref.local_sha])
        forced = False
    except GitError:
        forced = True  # the old tip is not an ancestor of the new one: history was rewritten
    paths = listed[:MAX_CHANGED_PATHS] if len(listed) <= MAX_CHANGED_PATHS else None
    return paths, len(listed), forced


def _safe(call: Callable[[], Any], default: Any) -> Any:
    try:
        return call()
    except GitError:
        return default


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Block until process `pid` exits (via a pidfd, so no polling); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def spool_for_repo(repo: Path, default: Path) -> Path:
    """The repo's own spool (`git config fluxmon.spoolDir`) if it has one, else `default`."""
    configured = _safe(lambda: run_git(["config", "--get", SPOOL_CONFIG_KEY], cwd=repo).strip(), "")
    return Path(configured).expanduser() if configured else default


def confirm_push(record_path: Path, *, git_pid: int, spool_dir: Path, remote: str = "", url: str = "") -> list[Path]:
    """Confirm one push that has a confirmer of its own; returns the session files written.

    `remote` and `url` are pre-push's arguments, which it passes in memory, and the repo is the work tree this
    process runs in (pre-push's). `spool_dir` is the default spool; a repo with its own (`fluxmon.spoolDir`)
    uses that. Also what hooks installed by an older fluxmon start for every push.
    """
    try:
        wait_for_exit(git_pid, MAX_WAIT_FOR_PUSH_SECONDS)
        push = parse_pending(record_path.read_text(encoding="utf-8"), remote=remote, url=url, repo=Path.cwd())
        return _confirm(push, record_path=record_path, spool_dir=spool_dir)
    finally:
        _forget(record_path)


def _confirm(push: PendingPush, *, record_path: Path, spool_dir: Path | None = None) -> list[Path]:
    """Decide each ref of a push whose git process has exited, and spool a session per confirmed one.

    `spool_dir`: the default spool; None takes the one of the environment the push was made in.
    """
    environ = push.git_environ()

    def git(args: Sequence[str]) -> str:
        return run_git(args, cwd=push.repo, env=environ)

    is_named_remote = push.remote != push.url
    refspecs, own_spool = _repo_settings(push.remote, git)
    tracked = {tracking_ref(ref.remote_ref, refspecs) for ref in push.refs} if is_named_remote else set()
    # The record is in <git dir>/fluxmon/pending/. Hooks of an older fluxmon also left a transaction log.
    updates = pushed_updates(record_path.parent.parent.parent, filter(None, tracked))
    tx_path = record_path.with_suffix(".tx")
    if tx_path.exists():
        updates |= parse_transactions(tx_path.read_text(encoding="utf-8"))
    spool_dir = own_spool or spool_dir or default_spool_dir(push.paths_environ())
    remote_url = push.url or _safe(lambda: git(["remote", "get-url", push.remote]).strip(), push.remote)

    ls_remote = _RemoteRefs(push)

    decisions = decide(push, refspecs=refspecs if is_named_remote else [], updates=updates, ls_remote=ls_remote)
    config = load_config(repo=push.repo, environ=push.paths_environ())
    for warning in config.warnings:
        log.warning("%s", warning)
    written = []
    # One id per git push, shared by its refs' sessions: the record's name holds the pids of git and pre-push.
    push_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + record_path.name.split(".")[0]
    for decision in decisions:
        if not decision.session:
            log.info("no session for %s: %s", decision.ref.remote_ref, decision.why)
            continue
        if not config.enabled:
            log.info("no session for %s: disabled by the repo's config", decision.ref.remote_ref)
            continue
        if config.ignores(remote_url=redact_url(remote_url), branch=decision.ref.short_name):
            log.info("no session for %s: ignored by config", decision.ref.remote_ref)
            continue
        record = session_record(push, decision, push_id=push_id, remote_url=remote_url, config=config, git=git)
        written.append(write_session(spool_dir, record))
    return written


def _repo_settings(remote: str, git: Callable[[Sequence[str]], str]) -> tuple[list[str], Path | None]:
    """The remote's fetch refspecs, and the repo's own spool (`fluxmon.spoolDir`) if it has one: one call to git."""
    wanted = f"remote.{remote}.fetch"
    listed = _safe(lambda: git(["config", "-z", "--get-regexp", r"^(fluxmon\.spooldir|remote\..*\.fetch)$"]), "")
    refspecs, spool = [], None
    for entry in listed.split("\0"):
        key, _, value = entry.partition("\n")
        if key == wanted:
            refspecs.append(value.strip())
        elif key == SPOOL_CONFIG_KEY.lower() and value.strip():
            spool = Path(value.strip()).expanduser()
    return refspecs, spool


def _forget(record_path: Path) -> None:
    """Remove a record (and the transaction log that hooks of an older fluxmon wrote beside it)."""
    record_path.unlink(missing_ok=True)
    record_path.with_suffix(".tx").unlink(missing_ok=True)


def serve_pending(pending: Path) -> list[Path]:
    """Be the repo's one shared confirmer: confirm every record in `pending` as its git process exits, until none
    is left; returns the session files written. Returns at once if another confirmer is serving the repo."""
    state = pending.parent
    written: list[Path] = []
    foreign: set[Path] = set()
    _drop_stale(pending)
    while True:
        with _serving(state) as ours:
            if not ours:
                return written  # the running one reads every record, this push's too
            written += _serve(pending, foreign)
        # Let go. A hook that wrote its record after our last look, while it still saw us running, started no
        # confirmer: its record is ours to read, unless another confirmer has started since.
        if not [record for record in _shared_records(pending) if record not in foreign]:
            return written


@contextlib.contextmanager
def _serving(state: Path) -> Iterator[bool]:
    """Hold the repo's confirmer lock and show pre-push our pid and start time; yields False if another holds it.

    pre-push shows a confirmer it starts at once, before its Python has started. A confirmer so shown always
    looks for records after that moment: if it gets the lock, it looks then; if not, the holder looks once more
    after letting go. Ours goes before the lock does, so a hook that still sees it wrote its record before
    that last look.
    """
    fd = os.open(state / CONFIRMER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        shown = state / CONFIRMER_FILE
        us = f"{os.getpid()} {_start_time(os.getpid())}\n"
        temp = state / f".{CONFIRMER_FILE}.{os.getpid()}"
        temp.write_text(us, encoding="utf-8")
        temp.replace(shown)
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                if shown.read_text(encoding="utf-8") == us:  # not one that a hook has just started and shown
                    shown.unlink()
    finally:
        os.close(fd)  # releases the lock


def _start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat, the process's start time in clock ticks since boot, as pre-push reads it."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    return stat.rpartition(")")[2].split()[19]


def _shared_records(pending: Path) -> list[Path]:
    """The records for the shared confirmer, oldest first (by name, the order of no use; by time, of pushes)."""
    try:
        entries = list(os.scandir(pending))
    except FileNotFoundError:
        return []
    records = []
    for entry in entries:
        if entry.name.endswith(".push") and not entry.name.endswith(OWN_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                records.append((entry.stat().st_mtime_ns, Path(entry.path)))
    return [path for _, path in sorted(records)]


def _drop_stale(pending: Path) -> None:
    """Remove what a confirmer that died (killed, or the machine went down) left behind: anything written more
    than MAX_WAIT_FOR_PUSH_SECONDS ago. Such a push is not confirmed hours late."""
    cutoff = time.time() - MAX_WAIT_FOR_PUSH_SECONDS
    try:
        entries = list(os.scandir(pending))
    except FileNotFoundError:
        return
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                log.info("dropped %s, left by a confirmer that did not finish", entry.name)
                Path(entry.path).unlink()


def _serve(pending: Path, foreign: set[Path]) -> list[Path]:
    """Confirm records as their git processes exit, in that order, until none has come for LINGER_SECONDS."""
    waiting: dict[Path, int | None] = {}  # record -> a pidfd of its git process; None once that has exited
    written: list[Path] = []
    busy = time.monotonic()
    try:
        while True:
            for record in _shared_records(pending):
                if record not in waiting and record not in foreign:
                    waiting[record] = _pidfd_of_git(record)
            if waiting:
                busy = time.monotonic()
            elif time.monotonic() - busy >= LINGER_SECONDS:
                return written
            for record in _exited(waiting, timeout=RESCAN_SECONDS):
                fd = waiting.pop(record)
                if fd is not None:
                    os.close(fd)
                written += _confirm_shared(record, foreign)
    finally:
        for fd in waiting.values():
            if fd is not None:
                os.close(fd)


def _pidfd_of_git(record: Path) -> int | None:
    """A pidfd of the git process that a record is named after (`<git pid>-<hook pid>.push`); None if gone."""
    try:
        return os.pidfd_open(int(record.name.split("-")[0]))
    except (ValueError, ProcessLookupError):
        return None


def _exited(waiting: Mapping[Path, int | None], *, timeout: float) -> list[Path]:
    """The records whose git process has exited (or that waited too long), waiting up to `timeout` for one."""
    done = [record for record, fd in waiting.items() if fd is None]
    poller = select.poll()
    by_fd = {}
    for record, fd in waiting.items():
        if fd is not None:
            poller.register(fd, select.POLLIN)
            by_fd[fd] = record
    done += [by_fd[fd] for fd, _ in poller.poll(0 if done else timeout * 1000)]
    cutoff = time.time() - MAX_WAIT_FOR_PUSH_SECONDS
    for record in waiting:
        with contextlib.suppress(FileNotFoundError):
            if record not in done and record.stat().st_mtime < cutoff:
                done.append(record)  # a push that takes over an hour is left alone: its record is dropped
    return sorted(done, key=list(waiting).index)


def _confirm_shared(record: Path, foreign: set[Path]) -> list[Path]:
    """Confirm one record of the shared folder; one that fails is logged, and never stops the others."""
    try:
        text = record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    if not text.startswith(PENDING_MAGIC + "\n"):
        foreign.add(record)  # written by a hook of an older fluxmon, which started a confirmer of its own for it
        return []
    try:
        if time.time() - record.stat().st_mtime > MAX_WAIT_FOR_PUSH_SECONDS:
            log.info("dropped %s: its push took over an hour", record.name)
            return []
        return _confirm(parse_pending(text), record_path=record)
    except (ValueError, OSError, FluxmonError) as error:
        log.warning("could not confirm the push of %s: %s", record.name, error)
        return []
    finally:
        _forget(record)
