"""The `fluxmon` command line: the composition root that builds each verb from core/ (and, lazily, the UI).

Exit statuses are part of the interface, for scripts and CI:
    0  success (for `assess`: nothing failed)
    1  a Flux object failed
    2  usage, input, config or cluster error
Every error a user can cause ends as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fluxmon import __version__
from fluxmon.core import hookinstall
from fluxmon.core.documents import iter_objects
from fluxmon.core.errors import FluxmonError, InputError
from fluxmon.core.gitpush import confirm_push
from fluxmon.core.objects import FluxObject, is_flux_body, parse_flux_object
from fluxmon.core.render import json_lines, table
from fluxmon.core.revision import normalize_commit
from fluxmon.core.spool import default_spool_dir, lock_holder
from fluxmon.core.verdict import Phase, Verdict, verdict

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
        print(f"fluxmon: {error.title}: {error.message}", file=sys.stderr)
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
        for body in iter_objects(text, source=name):
            if not is_flux_body(body):
                print(f"fluxmon: skipped {_describe(body)}: not a Flux object", file=sys.stderr)
                continue
            try:
                obj = parse_flux_object(body)
            except ValueError as exc:
                raise InputError(f"{name}: {exc}") from exc
            rows.append((obj, verdict(obj, target)))
    sys.stdout.write(table(rows) if args.output == "table" else json_lines(rows))
    sys.stdout.flush()
    return EXIT_FAILED if any(result.phase is Phase.FAILED for _, result in rows) else EXIT_OK


def _read_inputs(names: Sequence[str]) -> list[tuple[str, str]]:
    inputs = []
    for name in names:
        if name == "-":
            inputs.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            inputs.append((name, Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"cannot read {name}: {reason}") from exc
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
    spool_dir = default_spool_dir()
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
    written = confirm_push(args.record, git_pid=args.git_pid, spool_dir=default_spool_dir())
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
    stop = _stop_on_signals()
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
    cluster = SimCluster(repo=args.repo, kubeconfig=args.kubeconfig, path=args.path, port=args.port, timings=timings)
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


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so that long-running verbs shut down in order instead of dying."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop
