"""The `fluxmon` command line: the composition root that builds each verb from core/ (and, lazily, the UI).

Exit statuses are part of the interface, for scripts and CI:
    0  success (for `assess`: nothing failed)
    1  a Flux object failed
    2  usage, input, config or cluster error
Every error a user can cause ends as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluxmon import __version__
from fluxmon.core import hookinstall
from fluxmon.core.cache import KindState, KindStatus
from fluxmon.core.config import Config, load_config, parse_duration
from fluxmon.core.discovery import check_remote_url, redact_text, redact_url
from fluxmon.core.documents import iter_located_objects
from fluxmon.core.errors import FluxmonError, GitError, InputError
from fluxmon.core.gitpush import confirm_push, run_git, spool_for_repo
from fluxmon.core.kube import (
    PLURALS,
    Cluster,
    ClusterUnreachable,
    FluxNotInstalled,
    Forbidden,
    Unauthorized,
)
from fluxmon.core.manager import SessionManager
from fluxmon.core.objects import FluxObject, is_flux_body, parse_flux_object
from fluxmon.core.render import json_lines, table
from fluxmon.core.revision import normalize_commit
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState
from fluxmon.core.spool import default_spool_dir, lock_holder
from fluxmon.core.store import snapshot_record
from fluxmon.core.terminal import VERBOSITIES, WAITING, progress_lines, screen_rows, tree, use_colour
from fluxmon.core.text import display_line
from fluxmon.core.verdict import Phase, Verdict, verdict
from fluxmon.signals import StopSignals

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except FluxmonError as error:
        # One line: messages carry the cluster's and git's text, which may hold newlines or escape codes.
        print(display_line(f"fluxmon: {error.title}: {error.message}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fluxmon assess | head`: the reader left; nothing is wrong with us.
        sys.stderr.close()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxmon",
        description="Tells you whether Flux has deployed the commit you pushed, and if not, why.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    assess = verbs.add_parser(
        "assess",
        help="judge Flux objects read from YAML or JSON (kubectl get -o yaml)",
        description=(
            "Judge each Flux object in the input: Ready, Failed, Progressing, Waiting, Pending, Suspended or "
            "Unknown. With --commit, an object counts as Ready only once it has applied that commit. "
            "Exits 1 when any object failed, 2 on unreadable input."
        ),
    )
    assess.add_argument("files", nargs="*", metavar="FILE", help="files to read; none, or -, reads stdin")
    assess.add_argument("--commit", metavar="SHA", help="judge relative to this pushed commit (7 to 40 hex)")
    assess.add_argument("--output", "-o", choices=("json", "table"), default="json", help="default: json lines")
    assess.set_defaults(command=run_assess)

    for name, runner, text in (
        ("wait", run_wait, "block until Flux has deployed a commit (or failed); for terminals and CI"),
        ("watch", run_watch, "follow a commit's deployment as a live tree"),
    ):
        follow = verbs.add_parser(
            name,
            help=text,
            description=(
                f"{text[0].upper()}{text[1:]}. The commit, remote and branch default to the repository's HEAD and "
                "its upstream. Exit status: 0 deployed, 1 failed, 2 usage, config or cluster error, 3 timed out, "
                "4 no Flux source follows this remote and branch, 5 superseded (a force push rewrote it away)."
            ),
        )
        follow.add_argument("--repo", type=Path, default=Path(), metavar="DIR", help="the git repository (default: .)")
        follow.add_argument("--remote", help="remote name or URL (default: the upstream's remote)")
        follow.add_argument("--branch", help="branch (default: the upstream's branch)")
        follow.add_argument("--commit", metavar="SHA", help="the pushed commit (default: HEAD)")
        follow.add_argument("--timeout", metavar="DUR", help="e.g. 300, 90s, 5m (default: from config, 5m)")
        follow.add_argument("--reconcile", action="store_true", help="ask Flux to fetch now (needs patch permission)")
        follow.add_argument("--context", help="kubeconfig context (default: the current one)")
        follow.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        if name == "wait":
            follow.add_argument("--json", action="store_true", help="print one JSON snapshot per change on stdout")
        else:
            follow.add_argument("--verbosity", choices=VERBOSITIES, help="default: from config, normal")
        follow.set_defaults(command=runner)

    demo = verbs.add_parser(
        "demo",
        help="run everything on this machine with a simulated cluster: three real pushes, followed live",
        description=(
            "Create a sample GitOps repo and a bare remote in a temporary folder, install the hooks, start the "
            "simulated Flux cluster, and follow three real pushes: a good change, a broken manifest, the fix."
        ),
    )
    demo.add_argument("--headless", action="store_true", help="the terminal view instead of the tray")
    demo.add_argument("--keep", action="store_true", help="keep following your own pushes until Ctrl-C")
    demo.add_argument("--fast", action="store_true", help="test timings: every step takes milliseconds")
    demo.set_defaults(command=run_demo_command)

    tray = verbs.add_parser(
        "tray",
        help="the desktop app: a tray icon, notifications and details for every push the hooks capture",
        description="Follow every captured push in the system tray until Quit (or SIGINT/SIGTERM). One per user.",
    )
    tray.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config")
    tray.add_argument("--context", help="default: from config, else the kubeconfig's current context")
    tray.set_defaults(command=run_tray)

    autostart = verbs.add_parser("autostart", help="start the tray at login (an XDG autostart entry)")
    autostart.add_argument("action", choices=("enable", "disable"))
    autostart.set_defaults(command=run_autostart)

    hook = verbs.add_parser("hook", help="install, remove or inspect the git hooks that capture pushes")
    hook_verbs = hook.add_subparsers(title="hook commands", metavar="ACTION", required=True)
    for action, runner, text in (
        ("install", run_hook_install, "install the hooks (idempotent; existing hooks are chained, not replaced)"),
        ("uninstall", run_hook_uninstall, "remove the hooks and restore the ones they chained"),
    ):
        sub = hook_verbs.add_parser(action, help=text, description=text)
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--repo", type=Path, metavar="DIR", help="the repository (default: the current one)")
        where.add_argument("--global", dest="global_", action="store_true", help="for every repo of this user")
        sub.set_defaults(command=runner)
    status = hook_verbs.add_parser("status", help="what is installed where, and whether the tray app is running")
    status.add_argument("--repo", type=Path, metavar="DIR", help="the repository (default: the current one)")
    status.set_defaults(command=run_hook_status)
    sim = verbs.add_parser(
        "sim",
        help="run a simulated Flux cluster that follows a local git repository",
        description=(
            "Start a Kubernetes-compatible API server on loopback with simulated Flux controllers, bootstrapped "
            "on BARE_REPO like `flux bootstrap`; write a kubeconfig for it and run until Ctrl-C. "
            "`fluxmon sim init-repo DIR` creates a sample fleet repository (and DIR.git, its bare remote)."
        ),
    )
    sim.add_argument("--repo", type=Path, metavar="BARE_REPO", help="the bare repository the cluster follows")
    sim.add_argument("--kubeconfig", type=Path, metavar="OUT", help="where to write the kubeconfig")
    sim.add_argument("--port", type=int, default=0, help="API server port (default: any free one)")
    sim.add_argument("--path", default="clusters/local", help="the path flux-system applies (default: %(default)s)")
    sim.add_argument("--attach", type=Path, metavar="KUBECONFIG", help="run only the controllers, on that cluster")
    sim.add_argument("--fast", action="store_true", help="test timings: every step takes milliseconds")
    sim.set_defaults(command=run_sim)
    sim_verbs = sim.add_subparsers(title="sim commands", metavar="ACTION")
    init_repo = sim_verbs.add_parser("init-repo", help="create a sample GitOps fleet repository")
    init_repo.add_argument("directory", type=Path, metavar="DIR")
    init_repo.set_defaults(command=run_sim_init_repo)

    # Run by the pre-push hook in the background; not for people.
    confirm = hook_verbs.add_parser("confirm")
    confirm.add_argument("record", type=Path)
    confirm.add_argument("--git-pid", type=int, required=True)
    confirm.set_defaults(command=run_hook_confirm)
    return parser


def run_assess(args: argparse.Namespace) -> int:
    """`fluxmon assess`: one verdict per Flux object in the input."""
    target = None
    if args.commit:
        try:
            target = normalize_commit(args.commit)
        except ValueError as exc:
            raise InputError(f"--commit: {exc}") from exc
    rows: list[tuple[FluxObject, Verdict]] = []
    for name, text in _read_inputs(args.files or ["-"]):
        for where, body in iter_located_objects(text, source=name):
            if not is_flux_body(body):
                print(display_line(f"fluxmon: skipped {_describe(body)}: not a Flux object"), file=sys.stderr)
                continue
            try:
                obj = parse_flux_object(body)
            except ValueError as exc:
                raise InputError(f"{where}: {exc}") from exc
            for problem in obj.problems:
                print(display_line(f"fluxmon: {where}: {obj.ref}: {problem}; read as empty"), file=sys.stderr)
            result = verdict(obj, target)
            rows.append((obj, replace(result, message=redact_text(result.message))))  # CI logs keep no token
    sys.stdout.write(table(rows) if args.output == "table" else json_lines(rows))
    sys.stdout.flush()
    return EXIT_FAILED if any(result.phase is Phase.FAILED for _, result in rows) else EXIT_OK


def _read_inputs(names: Sequence[str]) -> list[tuple[str, str]]:
    inputs = []
    for name in names:
        shown = "<stdin>" if name == "-" else name
        try:
            # Bytes, decoded here: stdin's own decoding lets invalid UTF-8 through as surrogates, which the YAML
            # parser then fails on with a traceback.
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            inputs.append((shown, data.decode("utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"cannot read {shown}: {reason}") from exc
    return inputs


def _describe(body: Mapping[str, Any]) -> str:
    """`v1 ConfigMap apps/settings`, for the note on a skipped object."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = "/".join(str(part) for part in (metadata.get("namespace"), metadata.get("name")) if part)
    return f"{body.get('apiVersion')} {body.get('kind')} {name}".strip()


def run_hook_install(args: argparse.Namespace) -> int:
    for line in hookinstall.install(repo=args.repo, global_=args.global_):
        print(line)
    return EXIT_OK


def run_hook_uninstall(args: argparse.Namespace) -> int:
    for line in hookinstall.uninstall(repo=args.repo, global_=args.global_):
        print(line)
    return EXIT_OK


def run_hook_status(args: argparse.Namespace) -> int:
    for state in hookinstall.status(repo=args.repo):
        if state.ours:
            chained = f", chaining {state.chained.name}" if state.chained else ""
            print(f"{state.name}: installed at {state.path}{chained}")
        elif state.present:
            print(f"{state.name}: {state.path} is another hook, not fluxmon's")
        else:
            print(f"{state.name}: not installed ({state.path})")
    spool_dir = spool_for_repo(args.repo or Path.cwd(), default_spool_dir())  # the repo's own, as the hooks use
    holder = lock_holder(spool_dir)
    if holder is None:
        print(f"tray app: not running (sessions wait in {spool_dir})")
    else:
        print(f"tray app: running, pid {holder.pid}, since {holder.since} (reading {spool_dir})")
    return EXIT_OK


def run_hook_confirm(args: argparse.Namespace) -> int:
    """The background half of pre-push: wait for git, then spool a session per confirmed ref."""
    os.setsid()  # out of the terminal's process group, so a Ctrl-C after the push does not kill us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # pre-push passes the remote and its URL (which may hold credentials) in the environment, never on disk;
    # git's children need neither.
    remote = os.environ.pop("FLUXMON_PUSH_REMOTE", "")
    url = os.environ.pop("FLUXMON_PUSH_URL", "")
    written = confirm_push(args.record, git_pid=args.git_pid, spool_dir=default_spool_dir(), remote=remote, url=url)
    for path in written:
        logging.getLogger("fluxmon.hooks").info("spooled %s", path.name)
    return EXIT_OK


def run_sim(args: argparse.Namespace) -> int:
    """`fluxmon sim`: serve until SIGINT or SIGTERM, then stop everything it started."""
    from fluxmon.sim.client import KubeClient
    from fluxmon.sim.cluster import SimCluster, bootstrap, install_crds
    from fluxmon.sim.controllers import DEMO_TIMINGS, TEST_TIMINGS, FluxControllers

    if args.repo is None:
        raise InputError("--repo BARE_REPO is required (create one with `fluxmon sim init-repo DIR`)")
    if not (args.repo / "HEAD").exists():
        raise InputError(f"--repo {args.repo}: not a bare git repository")
    timings = TEST_TIMINGS if args.fast else DEMO_TIMINGS
    with StopSignals() as stop:
        if args.attach is not None:
            client = KubeClient.from_kubeconfig(args.attach)
            install_crds(client)
            bootstrap(client, repo=args.repo, path=args.path)
            controllers = FluxControllers(client, timings=timings)
            controllers.start()
            print(f"fluxmon sim: Flux controllers running against {args.attach}; Ctrl-C stops them", flush=True)
            stop.wait()
            controllers.stop()
            return EXIT_OK
        if args.kubeconfig is None:
            raise InputError("--kubeconfig OUT is required (or --attach KUBECONFIG)")
        cluster = SimCluster(
            repo=args.repo, kubeconfig=args.kubeconfig, path=args.path, port=args.port, timings=timings
        )
        cluster.start()
        print(
            f"fluxmon sim: cluster ready at {cluster.server.url}, following {args.repo}; "
            f"export KUBECONFIG={args.kubeconfig}",
            flush=True,
        )
        stop.wait()
        cluster.stop()
    return EXIT_OK


def run_sim_init_repo(args: argparse.Namespace) -> int:
    from fluxmon.sim.samplerepo import init_repo

    try:
        remote = init_repo(args.directory)
    except FileExistsError as exc:
        raise InputError(str(exc)) from exc
    print(f"created the sample fleet in {args.directory}, pushed to {remote}")
    print(f"next: fluxmon sim --repo {remote} --kubeconfig {args.directory.parent / 'kubeconfig'}")
    return EXIT_OK


EXIT_TIMED_OUT = 3
EXIT_NOT_DEPLOYED = 4
EXIT_SUPERSEDED = 5
"""Flux will never apply the commit (the branch's history no longer holds it), and nothing failed: not 1."""
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
    shown = ""
    screen = threading.Lock()

    def draw(text: str) -> None:
        """Up over every row the last tree took, wrapped rows included, clear to the end, and draw `text`."""
        nonlocal drawn, shown
        sys.stdout.write(f"\033[{drawn}F\033[J" if drawn else "")
        drawn, shown = screen_rows(text, shutil.get_terminal_size().columns), text
        sys.stdout.write(text)
        sys.stdout.flush()

    def show(snapshot: SessionSnapshot) -> None:
        text = tree(snapshot, verbosity=verbosity, colour=colour)
        if live:
            with screen:
                draw(text)
        elif snapshot.state.final:  # in a pipe, only the final tree: a log full of redraws helps nobody
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
        return _follow(args, show)
    finally:
        logging.getLogger("fluxmon").removeHandler(handler)


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


def run_demo_command(args: argparse.Namespace) -> int:
    from fluxmon.demo import run_demo

    logging.basicConfig(level=os.environ.get("FLUXMON_LOG", "WARNING").upper(), format="fluxmon: %(message)s")
    return run_demo(keep=args.keep, fast=args.fast, headless=args.headless)


def run_tray(args: argparse.Namespace) -> int:
    """`fluxmon tray`: the desktop app, until Quit or a signal. The UI is imported only here."""
    from fluxmon.core.store import default_state_dir
    from fluxmon.tray.app import TrayApp, TrayOptions, report_leftover_threads

    logging.basicConfig(level=os.environ.get("FLUXMON_LOG", "INFO").upper(), format="fluxmon: %(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)  # its DEBUG output is every PNG chunk it reads
    config = load_config()
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    options = TrayOptions(
        spool_dir=default_spool_dir(),
        state_dir=default_state_dir(),
        config=config,
        kubeconfig=args.kubeconfig,
        context=args.context or config.context or None,
    )
    status = TrayApp(options).run()
    report_leftover_threads()
    return status


def run_autostart(args: argparse.Namespace) -> int:
    from fluxmon.tray import autostart

    if args.action == "enable":
        print(f"the tray starts at login: {autostart.enable()}")
    else:
        removed = autostart.disable()
        print(f"removed {removed}" if removed else "autostart was not enabled")
    return EXIT_OK
