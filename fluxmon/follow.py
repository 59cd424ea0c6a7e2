"""`fluxmon wait` and `fluxmon watch`: follow one push from the terminal, over the engine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fluxmon.core.cluster import (
    PLURALS,
    ClusterUnreachable,
    FluxNotInstalled,
    Forbidden,
    Unauthorized,
)
from fluxmon.core.config import Config, load_config, parse_duration
from fluxmon.core.errors import GitError, InputError
from fluxmon.core.git import run_git
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.marks import WAITING
from fluxmon.core.plan import check_remote_url
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import normalize_commit
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.store import snapshot_record
from fluxmon.core.terminal import progress_lines, screen_rows, tree, use_colour
from fluxmon.core.text import display_line
from fluxmon.exits import EXIT_FAILED, EXIT_NOT_DEPLOYED, EXIT_OK, EXIT_TIMED_OUT

FOLLOW_EXIT = {
    SessionState.SUCCEEDED: EXIT_OK,
    SessionState.FAILED: EXIT_FAILED,
    SessionState.TIMED_OUT: EXIT_TIMED_OUT,
    SessionState.NOT_DEPLOYED: EXIT_NOT_DEPLOYED,
}


def run_wait(args: argparse.Namespace) -> int:
    """`fluxmon wait`: progress on stderr (flux style), JSON snapshots on stdout with --json."""
    colour = use_colour(sys.stderr)
    previous: SessionSnapshot | None = None

    def show(snapshot: SessionSnapshot) -> None:
        nonlocal previous
        for line in progress_lines(previous, snapshot, colour=colour):
            print(line, file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(snapshot_record(snapshot)), flush=True)
        previous = snapshot

    return _follow(args, show)


def run_watch(args: argparse.Namespace) -> int:
    """`fluxmon watch`: the session as a tree, redrawn in place on a TTY; the final tree stays on screen."""
    live = sys.stdout.isatty()
    colour = use_colour(sys.stdout)
    verbosity = args.verbosity or load_config(repo=args.repo).verbosity
    drawn = 0

    def show(snapshot: SessionSnapshot) -> None:
        nonlocal drawn
        text = tree(snapshot, verbosity=verbosity, colour=colour)
        if live:
            # Up over every row the last tree took, wrapped rows included, then clear to the end of the screen.
            sys.stdout.write(f"\033[{drawn}F\033[J" if drawn else "")
            drawn = screen_rows(text, shutil.get_terminal_size().columns)
        elif not snapshot.state.final:
            return  # in a pipe, only the final tree: a log full of redraws helps nobody
        sys.stdout.write(text)
        sys.stdout.flush()

    return _follow(args, show)


def _follow(args: argparse.Namespace, show: Callable[[SessionSnapshot], None]) -> int:
    """Build the session from the repo and flags, follow it until it ends, and map the outcome to an exit status."""
    config = load_config(repo=args.repo if (args.repo / ".git").exists() else None)
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    try:
        timeout = parse_duration(args.timeout) if args.timeout else config.timeout_seconds
    except ValueError as exc:
        raise InputError(f"--timeout: {exc}") from exc
    spec = push_spec(args, config=config, timeout=timeout)
    cluster = Cluster.connect(kubeconfig=args.kubeconfig, context=args.context or config.context or None)
    updates: queue.Queue[SessionSnapshot] = queue.Queue()
    manager = SessionManager(cluster, kinds=config.monitor_types)
    manager.subscribe(updates.put)
    manager.start()
    # The session times out at its own deadline; the CLI keeps that deadline too, so that nothing (a server that
    # accepts and never answers, a stuck worker) can stretch --timeout by more than the grace below.
    deadline = time.monotonic() + (spec.created_at + timeout - time.time()) + FOLLOW_GRACE_SECONDS
    snapshot: SessionSnapshot | None = None
    reached = False
    try:
        manager.add(spec)
        while snapshot is None or not snapshot.state.final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(queue.Empty):  # no news: look at the cluster's state below all the same
                snapshot = updates.get(timeout=min(STATE_CHECK_SECONDS, remaining))
                show(snapshot)
            states = list(manager.cache.states().values())
            reached = reached or any(state.status is KindStatus.SYNCED for state in states)
            if not reached:
                _stop_early(states, server=cluster.server)
    finally:
        manager.stop()
        cluster.close()
    if not reached and (snapshot is None or not snapshot.state.final or snapshot.state is SessionState.TIMED_OUT):
        states = list(manager.cache.states().values())
        unreachable = [s for s in states if s.status is KindStatus.UNREACHABLE]
        if unreachable:
            raise ClusterUnreachable(unreachable[0].message)
        raise ClusterUnreachable(
            f"the API server at {cluster.server} (context {cluster.context!r}) accepted the connection but did not "
            f"answer within {timeout:g}s"
        )
    if snapshot is None or not snapshot.state.final:
        message = snapshot.message if snapshot is not None else "no result"
        print(display_line(f"{WAITING} timed out after {timeout:g}s: {message}"), file=sys.stderr)
        return EXIT_TIMED_OUT
    return FOLLOW_EXIT.get(snapshot.state, EXIT_FAILED)


def _stop_early(states: Sequence[KindState], *, server: str) -> None:
    """Raise when waiting on can only end in a timeout: the cluster has never been read, and says why not.

    A 401 and "Flux not installed" are final at once. A 403 is final when it covers every kind that is served.
    A cluster that refuses or drops the connection gets UNREACHABLE_TRIES tries (with backoff, about 2 s on a
    closed port), so that a server starting up a moment later is still caught.
    """
    unauthorized = [state for state in states if state.status is KindStatus.UNAUTHORIZED]
    if unauthorized:
        raise Unauthorized(unauthorized[0].message)
    if states and all(state.status is KindStatus.MISSING for state in states):
        raise FluxNotInstalled(states[0].message)
    forbidden = [state for state in states if state.status is KindStatus.FORBIDDEN]
    if forbidden and all(state.status in (KindStatus.FORBIDDEN, KindStatus.MISSING) for state in states):
        kinds = ", ".join(PLURALS[state.kind] for state in forbidden)
        raise Forbidden(
            f"the credentials may read none of the Flux kinds on {server}: fluxmon needs get, list and watch on "
            f"{kinds} (and list on events); the README lists the minimal ClusterRole. Server said: "
            f"{forbidden[0].message.rpartition('Server said: ')[2]}"
        )
    if states and all(
        state.status is KindStatus.UNREACHABLE and state.failures >= UNREACHABLE_TRIES for state in states
    ):
        raise ClusterUnreachable(f"{states[0].message} (tried {UNREACHABLE_TRIES} times)")


FULL_SHA_LENGTH = 40
STATE_CHECK_SECONDS = 0.5
"""How often the CLI looks at the cluster's state while no snapshot arrives (to stop early when Flux is absent)."""
FOLLOW_GRACE_SECONDS = 0.5
"""How long past the session's own timeout the CLI waits for the final snapshot before deciding itself."""
UNREACHABLE_TRIES = 3
"""A cluster never reached is given up after this many failed connections in a row (exit 2, not a timeout)."""


def push_spec(args: argparse.Namespace, *, config: Config, timeout: float) -> SessionSpec:
    """The push to follow: flags first, then the repository's HEAD and its upstream."""
    repo = args.repo.resolve()
    in_repo = (repo / ".git").exists() or _is_git_dir(repo)
    remote, branch = args.remote, args.branch
    if in_repo and (remote is None or branch is None):
        try:
            upstream = run_git(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"], cwd=repo).strip()
        except GitError:
            upstream = ""
        up_remote, _, up_branch = upstream.partition("/")
        remote = remote or up_remote or "origin"
        branch = branch or up_branch or run_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=repo).strip()
    if not remote or not branch:
        raise InputError("name the push: --remote and --branch (and --commit), or run inside its git repository")
    url = remote
    if in_repo and "://" not in remote and not remote.startswith(("/", ".")) and "@" not in remote:
        url = run_git(["remote", "get-url", remote], cwd=repo).strip()
    try:
        check_remote_url(url)
    except ValueError as exc:
        raise InputError(f"--remote {redact_url(url)[:200]!r}: {exc}") from None
    commit = args.commit
    if commit is None:
        if not in_repo:
            raise InputError("--commit is required outside a git repository")
        commit = run_git(["rev-parse", "HEAD"], cwd=repo).strip()
    elif in_repo:
        try:
            commit = run_git(["rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=repo).strip()
        except GitError:
            # Not in this clone (a shallow CI checkout, say): a full sha is still usable as it is.
            if len(commit) != FULL_SHA_LENGTH:
                raise InputError(f"--commit {commit}: not found in {repo}; give the full 40-hex sha") from None
    try:
        commit = normalize_commit(commit)
    except ValueError as exc:
        raise InputError(f"--commit: {exc}") from exc
    try:
        subject = run_git(["log", "-1", "--format=%s", commit], cwd=repo).strip() if in_repo else ""
    except GitError:
        subject = ""
    return SessionSpec(
        id=f"cli-{os.getpid()}-{commit[:8]}",
        remote_url=url,
        branch=branch,
        commit=commit,
        subject=subject,
        repo=str(repo) if in_repo else "",
        timeout_seconds=timeout,
        reconcile=args.reconcile,
        monitor_types=config.monitor_types,
    )


def _is_git_dir(path: Path) -> bool:
    try:
        return run_git(["rev-parse", "--is-inside-work-tree"], cwd=path).strip() == "true"
    except GitError:
        return False
