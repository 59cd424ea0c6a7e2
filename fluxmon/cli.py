"""The `fluxmon` command line: the parser, and the entry point that runs one verb (fluxmon/commands.py,
fluxmon/follow.py) and turns every error a user can cause into one line.

It is the composition root too: the verbs build the engine (core/engine.py) and, lazily, the UI. Exit statuses
are part of the interface (fluxmon/exits.py). Every error a user can cause ends as one line on stderr, never as a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fluxmon import __version__
from fluxmon.commands import (
    run_assess,
    run_autostart,
    run_demo_command,
    run_hook_confirm,
    run_hook_install,
    run_hook_status,
    run_hook_uninstall,
    run_sim,
    run_sim_init_repo,
    run_tray,
)
from fluxmon.core.config import VERBOSITIES
from fluxmon.core.errors import FluxmonError
from fluxmon.core.text import display_line
from fluxmon.exits import EXIT_OK, EXIT_USAGE
from fluxmon.feed import run_feed
from fluxmon.follow import run_wait, run_watch
from fluxmon.history import add_filter_arguments, run_history, run_report

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
        add_cluster_arguments(follow)
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
    add_cluster_arguments(tray)
    tray.set_defaults(command=run_tray)

    feed = verbs.add_parser(
        "feed",
        help="serve the pushes' outcomes as a CCTray feed (cctray.xml), for CCMenu, BuildNotify, CatLight...",
        description=(
            "Serve /cctray.xml: one project per remote and branch (and per cluster when there are several), "
            "Building while a push is followed, with the last outcome labelled by its short sha. Loopback only "
            "unless a token is given (clients send it as a Bearer token or a Basic password)."
        ),
    )
    feed.add_argument("--listen", metavar="HOST:PORT", help="default: feed_listen from config, else 127.0.0.1:8765")
    feed.add_argument("--print", action="store_true", help="print the feed once on stdout and exit")
    feed.add_argument("--token-env", metavar="VAR", help="the environment variable that holds the token")
    feed.set_defaults(command=run_feed)

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
    sim.add_argument("--path", help="the path flux-system applies (default: clusters/local)")
    sim.add_argument(
        "--cluster",
        dest="clusters",
        action="append",
        default=[],
        metavar="NAME[=PATH]",
        help="serve a cluster of this name (its context too), following PATH (default: clusters/NAME); repeat it "
        "for several clusters, each on its own port (with --port, the ports from there on)",
    )
    sim.add_argument(
        "--kubeconfig-dir", type=Path, metavar="DIR", help="with --cluster: also write DIR/NAME.kubeconfig per cluster"
    )
    sim.add_argument("--attach", type=Path, metavar="KUBECONFIG", help="run only the controllers, on that cluster")
    sim.add_argument("--fast", action="store_true", help="test timings: every step takes milliseconds")
    sim.set_defaults(command=run_sim)
    sim_verbs = sim.add_subparsers(title="sim commands", metavar="ACTION")
    init_repo = sim_verbs.add_parser("init-repo", help="create a sample GitOps fleet repository")
    init_repo.add_argument("directory", type=Path, metavar="DIR")
    init_repo.add_argument(
        "--cluster",
        dest="clusters",
        action="append",
        default=[],
        metavar="NAME",
        help="lay it out for several clusters, each at clusters/NAME with its own overlay apps/NAME",
    )
    init_repo.set_defaults(command=run_sim_init_repo)

    history = verbs.add_parser(
        "history",
        help="the pushes followed so far (by the tray, wait and watch), newest first",
        description=(
            "The pushes in your history, newest first: when, the outcome, the commit, branch, remote, each "
            "cluster's outcome, how long it took, and what failed. Filters combine; --json prints the history's "
            "own records (JSON Lines), --csv one row per push."
        ),
    )
    add_filter_arguments(history)
    output = history.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON record per line, as the history keeps it")
    output.add_argument("--csv", action="store_true", help="CSV with a header row")
    history.add_argument("--limit", type=positive, metavar="N", help="at most N pushes (the table: 50 by default)")
    history.set_defaults(command=run_history)

    report = verbs.add_parser(
        "report",
        help="success rate, push-to-deployed times, the slowest objects and the failures, over a period",
        description=(
            "A summary of the pushes chosen: the success rate, push-to-deployed p50 and p95 per Kustomization, "
            "HelmRelease and cluster, the slowest objects, the most frequent failure reasons and objects, and "
            "the trend per day. --html FILE writes it as a self-contained page with charts."
        ),
    )
    add_filter_arguments(report)
    report.add_argument("--html", type=Path, metavar="FILE", help="write the report as an HTML page with charts")
    report.set_defaults(command=run_report)

    mcp = verbs.add_parser(
        "mcp",
        help="serve coding agents (Kiro, Claude Code, VS Code...) over MCP on stdio: did my push deploy?",
        description=(
            "A Model Context Protocol server on stdin/stdout, for an agent to start: tools to wait for a push's "
            "deployment, list and read past sessions, and judge Flux objects. Read-only unless --allow-reconcile."
        ),
    )
    mcp.add_argument(
        "--allow-reconcile",
        action="store_true",
        help="let agents ask Flux to reconcile now (patches Flux objects; needs RBAC patch on the Flux kinds)",
    )
    add_cluster_arguments(mcp)
    mcp.set_defaults(command=run_mcp_command)

    # Run by the pre-push hook in the background; not for people.
    confirm = hook_verbs.add_parser("confirm")
    confirm.add_argument("record", type=Path)
    confirm.add_argument("--git-pid", type=int, required=True)
    confirm.set_defaults(command=run_hook_confirm)
    return parser


def positive(text: str) -> int:
    """A whole number, 1 or more (argparse says which argument is wrong, and exits 2)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def run_mcp_command(args: argparse.Namespace) -> int:
    """`fluxmon mcp`, imported here: only this verb loads the MCP SDK."""
    from fluxmon.agent import run_mcp

    return run_mcp(args)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Which clusters to follow (core/kubeconfig.py resolve_targets): the same three flags on wait, watch and tray."""
    parser.add_argument(
        "--context",
        dest="contexts",
        action="append",
        metavar="NAME",
        help=(
            "a kubeconfig context to follow the push on; repeat it for several clusters (default: `contexts` or "
            "`context` from config, else the kubeconfig's current context)"
        ),
    )
    parser.add_argument(
        "--all-contexts",
        action="store_true",
        help="follow the push on every context of the kubeconfig (not with --context)",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help=(
            "one kubeconfig file, for every context (default: the files in $KUBECONFIG, merged as kubectl merges "
            "them, else ~/.kube/config)"
        ),
    )
