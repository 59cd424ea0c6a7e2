"""Whether the commit Flux has is the pushed one's descendant, its ancestor, or another history altogether.

Flux fetches the branch tip. When the next push lands before Flux fetched the first one, Flux applies the newer
commit, which contains the first: that push is deployed (DESIGN §2, "Overtaken commits"), and git decides it with
`git merge-base --is-ancestor <pushed> <applied>` in the repository the push was made from. When a force push has
rewritten the branch, what Flux applies may no longer contain the pushed commit at all: that push will never be
deployed, and waiting for it would only end in a timeout.

`relate()` is the pure decision. `GitAncestry` asks git, off the session thread: `lookup()` returns the cached
answer, or None while a named worker thread finds it (fetching from the remote, read-only, when this clone lacks
the commit Flux has), and then calls `on_answer` so that the sessions are judged again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fluxmon.core.git import GIT_TIMEOUT_SECONDS, git_env
from fluxmon.core.redact import redact_text
from fluxmon.core.revision import short_sha

log = logging.getLogger("fluxmon.ancestry")

"""One local git query (merge-base, cat-file): milliseconds as a rule."""
FETCH_TIMEOUT_SECONDS = 30.0
"""A fetch of one branch from the remote, when this clone lacks the commit Flux has."""
MAX_CACHED_ANSWERS = 1024
STOP_TIMEOUT_SECONDS = 5.0

_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


class Relation(StrEnum):
    """How a commit that Flux has relates to the pushed one."""

    CONTAINS = "contains"
    """The pushed commit is an ancestor of it: deploying it deploys the push."""
    OLDER = "older"
    """It is an ancestor of the pushed commit, or of the tip the push replaced: Flux has not fetched the push yet."""
    REWRITTEN = "rewritten"
    """Neither: the branch's history was rewritten, and what Flux has no longer contains the pushed commit."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True, slots=True)
class Lineage:
    """The answer for one commit that Flux has: the relation, that commit in full, and why when unknown."""

    relation: Relation
    commit: str
    why: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Question:
    """Where to ask, and about what. `remote` (a remote's name or a URL) and `ref` say where to fetch from."""

    repo: str
    pushed: str
    seen: str
    replaced: str = ""
    """The tip the push replaced (all zeros or "" for a new branch): a force push's own old history is older."""
    remote: str = ""
    ref: str = ""


IsAncestor = Callable[[str, str], bool | None]
"""`(a, b)`: whether commit a is an ancestor of commit b (or b itself); None when git cannot tell."""


def relate(*, pushed: str, seen: str, replaced: str, is_ancestor: IsAncestor) -> Relation:
    """The relation of `seen` (what Flux has) to `pushed`, from ancestry answers alone."""
    contains = is_ancestor(pushed, seen)
    if contains:
        return Relation.CONTAINS
    older = is_ancestor(seen, pushed)
    if older:
        return Relation.OLDER
    if replaced.strip("0"):
        # The push itself was a force push that Flux has not fetched yet: what it has is the replaced history.
        before = is_ancestor(seen, replaced)
        if before:
            return Relation.OLDER
        if before is None:
            return Relation.UNKNOWN
    if contains is None or older is None:
        return Relation.UNKNOWN
    return Relation.REWRITTEN


def remote_relation(*, tip: str, contains: bool | None) -> tuple[Relation, str]:
    """What a rewritten-looking commit on Flux means, given the branch's tip on the remote now.

    `contains`: whether that tip contains the pushed commit. If it does, Flux is only behind; if the branch is
    gone or holds another history, the push was rewritten away.
    """
    if not tip:
        return Relation.REWRITTEN, ""
    if contains is None:
        return Relation.UNKNOWN, f"git could not tell whether {short_sha(tip)}, the remote's tip, contains the push"
    return (Relation.OLDER, "") if contains else (Relation.REWRITTEN, "")


class GitAncestry:
    """Answers Questions with git, one at a time on a worker thread, and caches them: `start()`, `stop()`."""

    def __init__(self, *, on_answer: Callable[[], None] = lambda: None, fetch: bool = True) -> None:
        self._on_answer = on_answer
        self._fetch = fetch
        self._answers: dict[Question, Lineage] = {}
        self._asked: set[Question] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Question | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: subprocess.Popen[str] | None = None
        """The git process at work, so that stop() can end a fetch from a remote that does not answer."""

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="fluxmon-ancestry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        with self._lock:
            running = self._running
        if running is not None:
            _kill_group(running)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
            self._thread = None

    def lookup(self, question: Question) -> Lineage | None:
        """The answer if known; otherwise None, and the question is asked (once) in the background."""
        with self._lock:
            answer = self._answers.get(question)
            if answer is not None or question in self._asked:
                return answer
            self._asked.add(question)
        self._queue.put(question)
        return None

    def answer(self, question: Question) -> Lineage:
        """Ask git now, on the caller's thread (the worker's job; also for tests and one-off tools)."""
        for value in (question.pushed, question.seen, question.replaced or "0" * 40):
            if not _COMMIT.match(value):
                return Lineage(relation=Relation.UNKNOWN, commit=question.seen, why="not a commit sha")
        repo = Path(question.repo)
        if not question.repo or not repo.is_dir():
            return Lineage(relation=Relation.UNKNOWN, commit=question.seen, why="the pushed repository is not here")
        seen = self._resolve(repo, question.seen)
        fetched = ""
        if seen is None and self._fetch:
            fetched = self._fetch_ref(repo, question.remote, question.ref)
            seen = self._resolve(repo, question.seen)
        if seen is None:
            where = f"; fetching it failed: {fetched}" if fetched else ""
            return Lineage(
                relation=Relation.UNKNOWN,
                commit=question.seen,
                why=f"{short_sha(question.seen)} is not in {question.repo}{where}",
            )
        relation = relate(
            pushed=question.pushed,
            seen=seen,
            replaced=question.replaced if question.replaced and self._resolve(repo, question.replaced) else "",
            is_ancestor=lambda a, b: self._is_ancestor(repo, a, b),
        )
        why = "git could not tell" if relation is Relation.UNKNOWN else ""
        if relation is Relation.REWRITTEN:
            # Flux may simply not have fetched since an older rewrite (or since my own force push): only a branch
            # that no longer holds the pushed commit on the remote, now, is a push rewritten away.
            relation, why = self._confirm_rewritten(repo, question)
        return Lineage(relation=relation, commit=seen, why=why)

    def _confirm_rewritten(self, repo: Path, question: Question) -> tuple[Relation, str]:
        tip, problem = self._remote_tip(repo, question.remote, question.ref)
        if tip is None:
            return Relation.UNKNOWN, f"{question.ref} on the remote: {problem}"
        if tip == question.pushed:
            return Relation.OLDER, ""
        if self._resolve(repo, tip) is None and self._fetch:
            self._fetch_ref(repo, question.remote, question.ref)
        return remote_relation(tip=tip, contains=self._is_ancestor(repo, question.pushed, tip))

    def _remote_tip(self, repo: Path, remote: str, ref: str) -> tuple[str | None, str]:
        """The sha `ref` has on the remote now ("" when it is gone), or None and why not."""
        if not remote or not ref.startswith("refs/") or remote.startswith("-"):
            return None, "nowhere to ask"
        try:
            status, stdout, stderr = self._git(
                repo, ["ls-remote", "--end-of-options", remote, ref], timeout=FETCH_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            return None, f"git ls-remote timed out after {FETCH_TIMEOUT_SECONDS:.0f}s"
        except OSError as error:
            return None, f"cannot run git: {error.strerror or error}"
        if status != 0:
            lines = stderr.strip().splitlines()
            return None, redact_text(lines[-1] if lines else f"git ls-remote exited with {status}")
        for line in stdout.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha.strip(), ""
        return "", ""

    def pushed_before(self, *, repo: str, earlier: str, later: str) -> bool:
        """Whether commit `earlier` is a proper ancestor of `later` (so its push came first); False if unsure.

        Synchronous, local and quick (no fetch): the session manager asks it when a push's session arrives after
        a newer one's, which happens when back-to-back pushes' confirmers finish out of order.
        """
        if earlier == later or not repo or not all(_COMMIT.match(sha) for sha in (earlier, later)):
            return False
        try:
            status, _, _ = self._git(
                Path(repo), ["merge-base", "--is-ancestor", "--end-of-options", earlier, later], track=False
            )
        except (subprocess.TimeoutExpired, OSError):
            return False
        return status == 0

    def _git(
        self, repo: Path, args: list[str], *, timeout: float = GIT_TIMEOUT_SECONDS, track: bool = True
    ) -> tuple[int, str, str]:
        """git with an argument list, no prompt and no terminal (a passphrase prompt could never be answered).

        `track`: the worker's own git, which stop() kills. Returns (exit status, stdout, stderr); raises
        subprocess.TimeoutExpired or OSError.
        """
        with self._lock:
            if self._stop.is_set() and track:
                raise OSError("stopping")  # stop() has begun: start no more git
            process = subprocess.Popen(
                ["git", *args],
                cwd=repo,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=git_env(),
                start_new_session=True,
            )
            if track:
                self._running = process
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise
        finally:
            if track:
                with self._lock:
                    self._running = None
        return process.returncode, stdout, stderr

    def _resolve(self, repo: Path, sha: str) -> str | None:
        """The full commit for `sha` if this clone has it, else None."""
        try:
            status, stdout, _ = self._git(
                repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}"]
            )
        except (subprocess.TimeoutExpired, OSError):
            return None
        return (stdout.strip() or None) if status == 0 else None

    def _is_ancestor(self, repo: Path, ancestor: str, descendant: str) -> bool | None:
        try:
            status, _, _ = self._git(repo, ["merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant])
        except (subprocess.TimeoutExpired, OSError):
            return None
        return {0: True, 1: False}.get(status)

    def _fetch_ref(self, repo: Path, remote: str, ref: str) -> str:
        """Fetch `ref` from `remote` into the object store only: no ref, FETCH_HEAD or tag changes. "" on success.

        `--refmap=` stops git from updating the remote-tracking branch as it would for `git fetch origin main`.
        """
        if not remote or not ref.startswith("refs/") or remote.startswith("-"):
            return "nowhere to fetch it from"
        # Nothing else in the user's repository either: no submodules, no gc or maintenance started behind them.
        args = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--refmap=",
            "--no-recurse-submodules",
            "--no-auto-maintenance",
            "--end-of-options",
            remote,
            ref,
        ]
        try:
            status, _, stderr = self._git(repo, args, timeout=FETCH_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return f"git fetch timed out after {FETCH_TIMEOUT_SECONDS:.0f}s"
        except OSError as error:
            return f"cannot run git: {error.strerror or error}"
        if status == 0:
            return ""
        lines = stderr.strip().splitlines()
        return redact_text(lines[-1] if lines else f"git fetch exited with {status}")

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            question = self._queue.get()
            if question is None:
                return
            try:
                answer = self.answer(question)
            except Exception as error:
                # One error boundary per question: a git oddity must not end the worker for every session.
                log.exception("asking git about %s failed", short_sha(question.seen))
                answer = Lineage(relation=Relation.UNKNOWN, commit=question.seen, why=f"git failed: {error}")
            if stop.is_set():
                return  # git was cut short by stop(): that is no answer, and nobody is waiting for one
            with self._lock:
                if len(self._answers) >= MAX_CACHED_ANSWERS:
                    oldest = next(iter(self._answers))
                    del self._answers[oldest]
                    self._asked.discard(oldest)
                self._answers[question] = answer
            self._on_answer()


def _kill_group(process: subprocess.Popen[str]) -> None:
    """End git and its helpers (git-remote-http, ssh), which hold its pipes open: it leads its own group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
