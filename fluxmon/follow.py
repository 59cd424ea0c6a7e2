"""`fluxmon wait` and `fluxmon watch`: follow one push from the terminal, over the engine.

Each records its push's outcome in the user's history (core/store.py), beside the tray's, without the tray's lock:
once the push has an outcome, as `wait` or `watch`. The tray may follow the same push (the hooks captured it):
the store keeps one record per push, the most final (a `wait` that failed fast while another cluster went on
yields to the tray's complete record). A history that cannot be written is one line on stderr, never a change
of the exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fluxmon.core import paths
from fluxmon.core.config import Config, load_config, parse_duration
from fluxmon.core.engine import Engine
from fluxmon.core.errors import FluxmonError, GitError, InputError
from fluxmon.core.git import run_git
from fluxmon.core.health import ClusterHealth, GiveUp
from fluxmon.core.integrations import Integrations
from fluxmon.core.kubeconfig import resolve_targets
from fluxmon.core.marks import WAITING
from fluxmon.core.plan import check_remote_url
from fluxmon.core.push import PushSnapshot
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import normalize_commit
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.store import SessionStore, push_record
from fluxmon.core.terminal import push_progress_lines, push_tree, screen_rows, use_colour
from fluxmon.core.text import display_line
from fluxmon.exits import EXIT_FAILED, EXIT_NOT_DEPLOYED, EXIT_OK, EXIT_SUPERSEDED, EXIT_TIMED_OUT

FOLLOW_EXIT = {
    SessionState.SUCCEEDED: EXIT_OK,
    SessionState.FAILED: EXIT_FAILED,
    SessionState.TIMED_OUT: EXIT_TIMED_OUT,
    SessionState.NOT_DEPLOYED: EXIT_NOT_DEPLOYED,
    SessionState.SUPERSEDED: EXIT_SUPERSEDED,
}


def run_wait(args: argparse.Namespace) -> int:
    """`fluxmon wait`: progress on stderr (flux style), JSON snapshots on stdout with --json."""
    colour = use_colour(sys.stderr)
    previous: PushSnapshot | None = None

    def show(push: PushSnapshot) -> None:
        nonlocal previous
        for line in push_progress_lines(previous, push, colour=colour):
            print(line, file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(push_record(push)), flush=True)
        previous = push

    return _follow(args, show, follower="wait")


def run_watch(args: argparse.Namespace) -> int:
    """`fluxmon watch`: the session as a tree, redrawn in place on a TTY; the final tree stays on screen."""
    live = sys.stdout.isatty()
    colour = use_colour(sys.stdout)
    verbosity = args.verbosity or load_config(repo=args.repo).verbosity
    drawn = 0
    shown = ""
    screen = threading.Lock()

    def draw(text: str) -> None:
        """Up over every row the last tree took, wrapped rows included, clear to the end, and draw `text`."""
        nonlocal drawn, shown
        sys.stdout.write(f"\033[{drawn}F\033[J" if drawn else "")
        drawn, shown = screen_rows(text, shutil.get_terminal_size().columns), text
        sys.stdout.write(text)
        sys.stdout.flush()

    def show(push: PushSnapshot) -> None:
        text = push_tree(push, verbosity=verbosity, colour=colour)
        if live:
            with screen:
                draw(text)
        elif push.state.final:  # in a pipe, only the final tree: a log full of redraws helps nobody
            sys.stdout.write(text)
            sys.stdout.flush()

    class AboveTheTree(logging.Handler):
        """A warning (a malformed object, said once) goes above the tree, which is drawn again below it: written
        over the tree, the next redraw would erase it."""

        def emit(self, record: logging.LogRecord) -> None:
            nonlocal drawn
            with screen:
                sys.stdout.write(f"\033[{drawn}F\033[J" if drawn else "")
                sys.stdout.flush()
                drawn = 0
                print(display_line(self.format(record)), file=sys.stderr, flush=True)
                if shown:
                    draw(shown)

    handler = AboveTheTree(logging.WARNING)
    if live:
        logging.getLogger("fluxmon").addHandler(handler)
    try:
        return _follow(args, show, follower="watch")
    finally:
        logging.getLogger("fluxmon").removeHandler(handler)


def _follow(args: argparse.Namespace, show: Callable[[PushSnapshot], None], *, follower: str) -> int:
    """Build the push from the repo and flags, follow it on every cluster until it has an outcome, and map that to
    an exit status. Each cluster's health comes with its sessions (and with each change of it): decided in core.

    With one cluster, a cluster that cannot be followed (unreachable, unauthorized, Flux missing) ends the wait at
    once with its error. With several, an unreachable one does not hold back the others: it is reported, and the
    push times out if it stays unreachable; one without Flux does not follow the push; a 401 or a 403 on every
    Flux kind still ends the wait, naming its context.
    """
    config = load_config(repo=args.repo if (args.repo / ".git").exists() else None)
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    try:
        timeout = parse_duration(args.timeout) if args.timeout else config.timeout_seconds
    except ValueError as exc:
        raise InputError(f"--timeout: {exc}") from exc
    spec = push_spec(args, config=config, timeout=timeout)
    targets = resolve_targets(
        flag_contexts=args.contexts or (), all_contexts=args.all_contexts, kubeconfig=args.kubeconfig, config=config
    )
    engine = Engine(targets=targets, kinds=config.monitor_types)
    # The session times out at its own deadline; the CLI keeps that deadline too, so that nothing (a server that
    # accepts and never answers, a stuck worker, a webhook that hangs) can stretch --timeout by more than the grace
    # below.
    deadline = time.monotonic() + (spec.created_at + timeout - time.time()) + FOLLOW_GRACE_SECONDS
    integrations = Integrations(config, paths.state_dir(), deadline=deadline, resume=False, follower=follower)
    updates: queue.Queue[PushSnapshot | ClusterHealth] = queue.Queue()
    engine.subscribe(updates.put)
    engine.subscribe(integrations.on_push)
    engine.subscribe_health(updates.put)
    integrations.start()
    try:
        engine.start()
    except BaseException:
        integrations.stop(deadline=deadline)
        raise
    several = len(engine.contexts) > 1
    push: PushSnapshot | None = None
    healths = {health.context: health for health in engine.health()}
    try:
        engine.add(spec)
        while push is None or not push.state.final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                update = updates.get(timeout=remaining)
            except queue.Empty:
                break
            if isinstance(update, ClusterHealth):
                healths[update.context] = update
            else:
                push = update
                healths.update(
                    (cluster.context, cluster.cluster) for cluster in push.clusters if cluster.cluster.server
                )
                show(push)
            for health in healths.values():
                error = health.error()
                if error is not None and not (several and health.give_up in SEVERAL_GO_ON):
                    raise error  # waiting on could only end in a timeout: say why now
    finally:
        engine.stop()
        integrations.stop(deadline=deadline)  # hands the outcome on, within the deadline; the rest stays queued
    if not several:
        health = next(iter(healths.values()), ClusterHealth())
        if not health.reached and (push is None or not push.state.final or push.state is SessionState.TIMED_OUT):
            raise health.unreached(timeout)
    if push is not None and push.state.final:
        record_outcome(push, config=config, follower=follower)
    if push is None or not push.state.final:
        message = push.message if push is not None else "no result"
        print(display_line(f"{WAITING} timed out after {timeout:g}s: {message}"), file=sys.stderr)
        return EXIT_TIMED_OUT
    return FOLLOW_EXIT.get(push.state, EXIT_FAILED)


def record_outcome(push: PushSnapshot, *, config: Config, follower: str) -> None:
    """Keep the push's outcome in the user's history (one for all: the tray's menu, reports, the feed read it)."""
    store = SessionStore(paths.state_dir(), retention=config.retention)
    try:
        store.record(push, follower=follower)
    except FluxmonError as error:
        print(display_line(f"fluxmon: the outcome is not in the history: {error}"), file=sys.stderr)


SEVERAL_GO_ON = (GiveUp.UNREACHABLE, GiveUp.NOT_INSTALLED)
"""With several clusters, these do not end the wait: an unreachable cluster times the push out if it stays so, and
one without Flux (a plain context among `--all-contexts`) does not follow the push."""
FULL_SHA_LENGTH = 40
FOLLOW_GRACE_SECONDS = 0.5
"""How long past the session's own timeout the CLI waits for the final snapshot before deciding itself."""


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
