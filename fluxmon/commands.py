"""The verbs of `fluxmon` other than following a push (fluxmon/follow.py): each takes the parsed arguments and
returns an exit status. The UI and the simulator are imported lazily, inside the verbs that need them."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from fluxmon.compose import build_tray, notifier_kind
from fluxmon.core import hookinstall, paths
from fluxmon.core.config import load_config
from fluxmon.core.documents import Utf8Stream, assess_stream
from fluxmon.core.engine import Engine
from fluxmon.core.errors import InputError
from fluxmon.core.feed import start_feed
from fluxmon.core.gitpush import confirm_push, spool_for_repo
from fluxmon.core.integrations import Integrations
from fluxmon.core.kubeconfig import resolve_targets
from fluxmon.core.objects import FluxObject
from fluxmon.core.render import format_table, json_line, table_cells
from fluxmon.core.revision import normalize_commit
from fluxmon.core.spool import lock_holder
from fluxmon.core.text import display_line
from fluxmon.core.verdict import Verdict
from fluxmon.exits import EXIT_FAILED, EXIT_OK
from fluxmon.signals import StopSignals

if TYPE_CHECKING:
    from fluxmon.sim.reconciler import SimTimings

R = TypeVar("R")


def run_assess(args: argparse.Namespace) -> int:
    """`fluxmon assess`: one verdict per Flux object in the input. The input is read an object at a time and only
    each verdict's output is kept; it is printed at the end (a table's columns need every row), so that an
    unreadable input leaves no half answer on stdout."""
    target = None
    if args.commit:
        try:
            target = normalize_commit(args.commit)
        except ValueError as exc:
            raise InputError(f"--commit: {exc}") from exc
    with ExitStack() as opened:
        inputs = _open_inputs(args.files or ["-"], opened)
        if args.output == "table":
            cells, failed = _judge_inputs(inputs, target=target, keep=table_cells)
            sys.stdout.write(format_table(cells))
        else:
            lines, failed = _judge_inputs(inputs, target=target, keep=json_line)
            sys.stdout.write("".join(lines))
    sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_OK


def _judge_inputs(
    inputs: Sequence[tuple[str, Utf8Stream]], *, target: str | None, keep: Callable[[FluxObject, Verdict], R]
) -> tuple[list[R], bool]:
    """What `keep` makes of each Flux object's verdict, and whether any failed; notes go to stderr as they come."""
    kept: list[R] = []
    failed = False
    for name, stream in inputs:
        for judged in assess_stream(stream, source=name, target=target, keep=keep):
            for note in judged.notes:
                print(display_line(f"fluxmon: {note}"), file=sys.stderr)
            if judged.kept is not None:
                kept.append(judged.kept)
            failed = failed or judged.failed
    return kept, failed


def _open_inputs(names: Sequence[str], opened: ExitStack) -> list[tuple[str, Utf8Stream]]:
    """Every input opened before any is read, so that a missing file is said before anything else. Each is read as
    bytes, decoded as they come (Utf8Stream): stdin's own decoding lets invalid UTF-8 through as surrogates, which
    the YAML parser then fails on with a traceback."""
    inputs = []
    for name in names:
        if name == "-":
            if sys.stdin is None:  # started with stdin closed (`<&-`): Python then has none
                raise InputError("cannot read <stdin>: it is closed; name a FILE to read")
            inputs.append(("<stdin>", Utf8Stream(sys.stdin.buffer, source="<stdin>")))
            continue
        try:
            raw = opened.enter_context(Path(name).open("rb"))  # noqa: SIM115 - closed with `opened`
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
        inputs.append((name, Utf8Stream(raw, source=name)))
    return inputs


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
        if state.retired:
            print(f"{state.name}: {state.path} is left by an older fluxmon; 'fluxmon hook install' removes it")
        elif state.ours:
            chained = f", chaining {state.chained.name}" if state.chained else ""
            older = "" if state.current else "; an older fluxmon's, 'fluxmon hook install' updates it"
            print(f"{state.name}: installed at {state.path}{chained}{older}")
        elif state.present:
            print(f"{state.name}: {state.path} is another hook, not fluxmon's")
        else:
            print(f"{state.name}: not installed ({state.path})")
    spool_dir = spool_for_repo(args.repo or Path.cwd(), paths.spool_dir())  # the repo's own, as the hooks use
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
    written = confirm_push(args.record, git_pid=args.git_pid, spool_dir=paths.spool_dir(), remote=remote, url=url)
    for path in written:
        logging.getLogger("fluxmon.hooks").info("spooled %s", path.name)
    return EXIT_OK


PORT_MAX = 65535


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
    last_port = args.port + max(len(args.clusters) - 1, 0) if args.port else 0
    if not 0 <= args.port <= PORT_MAX or last_port > PORT_MAX:
        raise InputError(f"--port {args.port}: give a port from 1 to {PORT_MAX} (0: any free one) for every cluster")
    if args.clusters:
        return _run_sim_fleet(args, timings)
    if args.kubeconfig_dir is not None:
        raise InputError("--kubeconfig-dir writes one file per --cluster; name the clusters, or use --kubeconfig")
    with StopSignals() as stop:
        if args.attach is not None:
            client = KubeClient.from_kubeconfig(args.attach)
            install_crds(client)
            bootstrap(client, repo=args.repo, path=args.path or "clusters/local")
            controllers = FluxControllers(client, timings=timings)
            controllers.start()
            print(f"fluxmon sim: Flux controllers running against {args.attach}; Ctrl-C stops them", flush=True)
            stop.wait()
            controllers.stop()
            return EXIT_OK
        if args.kubeconfig is None:
            raise InputError("--kubeconfig OUT is required (or --attach KUBECONFIG)")
        cluster = SimCluster(
            repo=args.repo,
            kubeconfig=args.kubeconfig,
            path=args.path or "clusters/local",
            port=args.port,
            timings=timings,
        )
        try:
            cluster.start()
        except OSError as exc:
            raise InputError(_not_served(exc)) from exc
        print(
            f"fluxmon sim: cluster ready at {cluster.server.url}, following {args.repo}; "
            f"export KUBECONFIG={args.kubeconfig}",
            flush=True,
        )
        stop.wait()
        cluster.stop()
    return EXIT_OK


def _run_sim_fleet(args: argparse.Namespace, timings: SimTimings) -> int:
    """`fluxmon sim --cluster staging --cluster production`: a simulated cluster per name, each on its own port with
    its own controllers, following the repo at `clusters/<name>` (or NAME=PATH), one kubeconfig context each."""
    from fluxmon.sim.cluster import SimFleet
    from fluxmon.sim.samplerepo import check_cluster_names, cluster_path

    if args.attach is not None:
        raise InputError("--attach runs controllers on one existing cluster; it does not take --cluster")
    if args.path is not None:
        raise InputError("--path is for one cluster; give each cluster its path as --cluster NAME=PATH")
    if args.kubeconfig is None and args.kubeconfig_dir is None:
        raise InputError("--kubeconfig OUT (one file, a context per cluster) or --kubeconfig-dir DIR is required")
    clusters = [_cluster_argument(text, cluster_path) for text in args.clusters]
    try:
        check_cluster_names([name for name, _ in clusters])
    except ValueError as exc:
        raise InputError(f"--cluster: {exc}") from exc
    fleet = SimFleet(
        repo=args.repo,
        clusters=clusters,
        kubeconfig=args.kubeconfig,
        kubeconfig_dir=args.kubeconfig_dir,
        port=args.port,
        timings=timings,
    )
    with StopSignals() as stop:
        try:
            fleet.start()
        except OSError as exc:
            raise InputError(_not_served(exc)) from exc
        for cluster in fleet.clusters:
            print(
                f"fluxmon sim: cluster {cluster.context} ready at {cluster.server.url}, "
                f"following {args.repo} at {cluster.path}",
                flush=True,
            )
        files = [str(args.kubeconfig)] if args.kubeconfig is not None else []
        files += [str(cluster.kubeconfig) for cluster in fleet.clusters if args.kubeconfig is None]
        print(f"fluxmon sim: export KUBECONFIG={':'.join(files)}", flush=True)
        stop.wait()
        fleet.stop()
    return EXIT_OK


def _not_served(error: OSError) -> str:
    """One line for a simulator that could not start: a port in use, or a kubeconfig it cannot write."""
    if error.filename:
        return f"cannot write {error.filename}: {error.strerror}"
    return error.strerror or str(error)


def _cluster_argument(text: str, default_path: Callable[[str], str]) -> tuple[str, str]:
    """`staging` -> (staging, clusters/staging); `prod=clusters/production` -> (prod, clusters/production)."""
    name, _, path = text.partition("=")
    path = path.strip().strip("/")
    if "=" in text and not path:
        raise InputError(f"--cluster {text}: the path after '=' is empty")
    return name.strip(), path or default_path(name.strip())


def run_sim_init_repo(args: argparse.Namespace) -> int:
    from fluxmon.sim.samplerepo import cluster_path, init_repo

    clusters = tuple(args.clusters or ())
    try:
        remote = init_repo(args.directory, clusters=clusters)
    except (FileExistsError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    print(f"created the sample fleet in {args.directory}, pushed to {remote}")
    if clusters:
        print(
            f"its clusters follow {', '.join(cluster_path(name) for name in clusters)}; next: fluxmon sim --repo "
            f"{remote} {' '.join(f'--cluster {name}' for name in clusters)} "
            f"--kubeconfig {args.directory.parent / 'kubeconfig'}"
        )
    else:
        print(f"next: fluxmon sim --repo {remote} --kubeconfig {args.directory.parent / 'kubeconfig'}")
    return EXIT_OK


def run_demo_command(args: argparse.Namespace) -> int:
    from fluxmon.demo import run_demo

    logging.basicConfig(level=os.environ.get("FLUXMON_LOG", "WARNING").upper(), format="fluxmon: %(message)s")
    return run_demo(keep=args.keep, fast=args.fast, headless=args.headless)


def run_tray(args: argparse.Namespace) -> int:
    """`fluxmon tray`: the desktop app, until Quit or a signal. The UI is imported only here."""
    from fluxmon.tray.app import report_leftover_threads
    from fluxmon.tray.icon import choose_backend

    logging.basicConfig(level=os.environ.get("FLUXMON_LOG", "INFO").upper(), format="fluxmon: %(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)  # its DEBUG output is every PNG chunk it reads
    config = load_config()
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    notifier = notifier_kind()
    backend = choose_backend()
    targets = resolve_targets(
        flag_contexts=args.contexts or (),
        all_contexts=args.all_contexts,
        kubeconfig=args.kubeconfig,
        config=config,
    )
    engine = Engine(
        targets=targets,
        require_all=False,
        kinds=config.monitor_types,
        default_timeout=config.timeout_seconds,
        state_dir=paths.state_dir(),
        retention=config.retention,
        spool_dir=paths.spool_dir(),
    )
    integrations = Integrations(config, paths.state_dir())
    engine.subscribe(integrations.on_push)
    tray = build_tray(
        engine,
        config=config,
        backend=backend,
        icon_dir=paths.runtime_dir() / "icons",
        notifier=notifier,
        context_given=bool(args.contexts or args.all_contexts),
        kubeconfig=args.kubeconfig,
    )
    feed = start_feed(config, paths.state_dir(), os.environ)
    integrations.start()
    try:
        status = tray.run()
    finally:
        integrations.stop()
        if feed is not None:
            feed.stop()
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
