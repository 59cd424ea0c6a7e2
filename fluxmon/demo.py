"""`fluxmon demo`: the whole product on this machine, with no cluster.

It creates the sample fleet and its bare remote in a temporary folder, installs the git hooks there, starts two
simulated clusters, staging and production (each its own API server and Flux, following its own path of the
repository, as fluxcd/flux2-kustomize-helm-example lays out two clusters), and runs the real pipeline: git push ->
hooks -> spool -> spool reader -> the engine, which follows each push on both clusters -> terminal view. Then it
makes three real pushes: a good change (deployed to both), a broken manifest that only production applies (failed
on production, deployed to staging), and the fix (deployed to both). With --keep it goes on following your own
pushes to that repo until Ctrl-C, and leaves it on disk. Everything it started is stopped on exit. With a display
it shows the tray (the pushes then run on a thread of their own while Tk owns the main thread); `--headless`, or
no display, prints the terminal view instead.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from fluxmon.core import hookinstall
from fluxmon.core.cluster import ClusterTarget
from fluxmon.core.config import DEFAULT_MONITOR_TYPES, load_config
from fluxmon.core.engine import Engine
from fluxmon.core.push import PushSnapshot
from fluxmon.core.revision import short_sha
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.spool import SessionRequest
from fluxmon.core.terminal import push_progress_lines, push_tree, use_colour
from fluxmon.core.text import display_line
from fluxmon.signals import StopSignals
from fluxmon.sim.cluster import SimFleet
from fluxmon.sim.controllers import DEMO_TIMINGS, TEST_TIMINGS
from fluxmon.sim.samplerepo import cluster_path, init_repo

DEMO_PACE = replace(DEMO_TIMINGS, health_timeout_seconds=4.0, retry_seconds=5.0)
"""Steps slow enough to watch, failures quick enough not to bore."""
SESSION_TIMEOUT_SECONDS = 120.0


CLUSTERS = ("staging", "production")
"""The demo's clusters, in the order they are shown; each follows `clusters/<name>` of the sample repository."""


@dataclass(frozen=True)
class Step:
    title: str
    path: str
    old: str
    new: str
    expected: SessionState
    failing_on: tuple[str, ...] = ()
    """The clusters this push breaks; every other one deploys it."""


BROKEN_SETTINGS = "  logLevel: info\n    oops: [unclosed"
SCRIPT = (
    Step(
        "a good change: scale web to 3 replicas, on both clusters",
        "apps/base/web.yaml",
        "replicas: 2",
        "replicas: 3",
        SessionState.SUCCEEDED,
    ),
    Step(
        "a broken manifest only production applies: bad indentation in apps/production/web-settings.yaml",
        "apps/production/web-settings.yaml",
        "  logLevel: info",
        BROKEN_SETTINGS,
        SessionState.FAILED,
        failing_on=("production",),
    ),
    Step(
        "the fix: revert the broken line",
        "apps/production/web-settings.yaml",
        BROKEN_SETTINGS,
        "  logLevel: info",
        SessionState.SUCCEEDED,
    ),
)


def ended_as_expected(push: PushSnapshot, step: Step) -> bool:
    """The push's outcome is the step's, and each cluster's too: failed where the step breaks it, else deployed."""
    return push.state is step.expected and all(
        cluster.state is (SessionState.FAILED if cluster.context in step.failing_on else SessionState.SUCCEEDED)
        for cluster in push.clusters
    )


def run_demo(*, keep: bool, fast: bool, headless: bool, out: TextIO = sys.stdout) -> int:
    """Run the scripted demo; returns 0 when every push ended as expected (and, with the tray, once it quits)."""
    workdir = Path(tempfile.mkdtemp(prefix="fluxmon-demo-"))
    os.environ["FLUXMON_SPOOL_DIR"] = str(workdir / "spool")  # the hooks (and so the confirmer) inherit it
    for key, value in (
        ("GIT_AUTHOR_NAME", "fluxmon demo"),
        ("GIT_AUTHOR_EMAIL", "demo@fluxmon.invalid"),
        ("GIT_COMMITTER_NAME", "fluxmon demo"),
        ("GIT_COMMITTER_EMAIL", "demo@fluxmon.invalid"),
    ):
        os.environ.setdefault(key, value)
    say = _printer(out)
    narrator = _Narrator(colour=use_colour(out), say=say)
    fleet: SimFleet | None = None
    backend = ""
    try:
        backend = "" if headless else _tray_backend(say)
        bare = init_repo(workdir / "fleet", clusters=CLUSTERS)
        work = workdir / "fleet"
        # The repo's own spool setting, not only this process's environment: the user's pushes from another
        # shell (with --keep) must reach this demo too.
        hookinstall.install(repo=work, spool_dir=workdir / "spool")
        say(f"► sample fleet in {work} (pushing to {bare}), git hooks installed")
        fleet = SimFleet(
            repo=bare,
            clusters=[(name, cluster_path(name)) for name in CLUSTERS],
            kubeconfig=workdir / "kubeconfig",
            timings=TEST_TIMINGS if fast else DEMO_PACE,
        )
        fleet.start()
        for cluster in fleet.clusters:
            say(f"► simulated cluster {cluster.context} at {cluster.server.url}, following {cluster.path}")
        say(f"► KUBECONFIG={workdir / 'kubeconfig'} (contexts {' and '.join(CLUSTERS)})")
        script = _Script(work=work, bare=bare, narrator=narrator, say=say)
        if not backend:
            return _run_headless(workdir, script, narrator, keep=keep)
        return _run_with_tray(workdir, script, narrator, backend=backend)
    finally:
        if fleet is not None:
            fleet.stop()
        if backend:
            from fluxmon.tray.app import report_leftover_threads

            report_leftover_threads()
        if keep:
            say(f"► kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _tray_backend(say: Callable[[str], None]) -> str:
    """The tray's backend; "" (the terminal view) with the reason when this machine cannot show a tray."""
    from fluxmon.tray.icon import TrayUnavailable, choose_backend

    try:
        return choose_backend()
    except TrayUnavailable as error:
        say(f"► no tray here ({error.message}); showing the terminal view instead")
        return ""


def _engine(
    workdir: Path,
    *,
    default_timeout: float,
    kinds: tuple[str, ...] = DEFAULT_MONITOR_TYPES,
    on_spooled: Callable[[SessionRequest], None] | None = None,
) -> Engine:
    """The same engine as the tray's, on the demo's clusters, spool and state folders."""
    return Engine(
        targets=[ClusterTarget(context=name, kubeconfig=str(workdir / "kubeconfig")) for name in CLUSTERS],
        kinds=kinds,
        default_timeout=default_timeout,
        state_dir=workdir / "state",
        spool_dir=workdir / "spool",
        on_spooled=on_spooled,
    )


def _run_headless(workdir: Path, script: _Script, narrator: _Narrator, *, keep: bool) -> int:
    def spooled(request: SessionRequest) -> None:
        narrator.say(recorded(request))

    engine = _engine(workdir, default_timeout=SESSION_TIMEOUT_SECONDS, on_spooled=spooled)
    engine.subscribe(narrator.show)
    engine.start()
    try:
        ok = script.play(engine.add, stop=threading.Event())
        if keep:
            narrator.say(f"► still following pushes to {script.work}; edit, commit and `git push` there. Ctrl-C stops.")
            _wait_for_interrupt()
        return 0 if ok else 1
    finally:
        engine.stop()


def _run_with_tray(workdir: Path, script: _Script, narrator: _Narrator, *, backend: str) -> int:
    from fluxmon.compose import build_tray, notifier_kind

    config = load_config(repo=script.work)
    engine = _engine(workdir, default_timeout=config.timeout_seconds, kinds=config.monitor_types)
    app = build_tray(
        engine,
        config=config,
        backend=backend,
        icon_dir=workdir / "icons",
        notifier=notifier_kind(),
        observer=narrator.show,
    )
    stop = threading.Event()
    results: list[bool] = []

    def play() -> None:
        results.append(script.play(app.follow, stop=stop, show_details=app.show_details))
        if not stop.is_set():
            narrator.say(f"► the tray stays: push to {script.work} and watch, or Quit it from its menu (or Ctrl-C)")

    player = threading.Thread(target=play, name="fluxmon-demo-script", daemon=True)
    player.start()
    try:
        app.run()
    finally:
        stop.set()
        player.join(SESSION_TIMEOUT_SECONDS)
    return 0 if results and results[0] else 1


@dataclass
class _Script:
    """The scripted pushes: each a real commit and `git push`, which the hooks turn into a session."""

    work: Path
    bare: Path
    narrator: _Narrator
    say: Callable[[str], None]

    def play(
        self,
        follow: Callable[[SessionSpec], object],
        *,
        stop: threading.Event,
        show_details: Callable[[str], None] | None = None,
    ) -> bool:
        """Wait for the initial deployment, push each step, and say whether each ended as expected.

        `show_details`: the tray's details window, opened on the failed push so that the demo shows it unasked.
        """
        follow(
            SessionSpec(
                id="initial",
                remote_url=str(self.bare),
                branch="main",
                commit=_head(self.work),
                repo=str(self.work),
                subject="the initial fleet",
                timeout_seconds=SESSION_TIMEOUT_SECONDS,
            )
        )
        first = self.narrator.next_final(stop)
        if first is None:
            return False
        self.say(f"► the initial fleet: {first.message}")
        outcomes = []
        for number, step in enumerate(SCRIPT, start=1):
            self.say(f"\n► push {number} of {len(SCRIPT)}: {step.title}")
            _edit(self.work / step.path, step.old, step.new)
            _git(self.work, "commit", "-q", "-am", step.title)
            _git(self.work, "push", "-q", "origin", "main")
            snapshot = self.narrator.next_final(stop)
            if snapshot is None:
                return False
            self.say(push_tree(snapshot, colour=self.narrator.colour).rstrip())
            outcomes.append(ended_as_expected(snapshot, step))
            if show_details is not None and snapshot.state is SessionState.FAILED:
                show_details(snapshot.id)
                self.say("► opened its details window (later: click the notification, or the tray's menu)")
        ok = all(outcomes)
        self.say(f"\n{'✔' if ok else '✗'} demo finished: {sum(outcomes)} of {len(SCRIPT)} pushes ended as expected")
        return ok


class _Narrator:
    """Prints each session's progress, flux style, and hands over the final snapshots to the script."""

    def __init__(self, *, colour: bool, say: Callable[[str], None]) -> None:
        self.colour = colour
        self.say = say
        self._finals: queue.Queue[PushSnapshot] = queue.Queue()
        self._previous: dict[str, PushSnapshot] = {}

    def show(self, push: PushSnapshot) -> None:
        previous = self._previous.get(push.id)
        for line in push_progress_lines(previous, push, colour=self.colour):
            self.say(f"  {line}")
        self._previous[push.id] = push
        # Handed over once every cluster has ended, not at the push's outcome: a push fails as soon as production
        # does, and the demo's report shows staging deploying it all the same.
        settled = push.settled and (previous is None or not previous.settled)
        if settled and push.state is not SessionState.SUPERSEDED:
            self._finals.put(push)

    def next_final(self, stop: threading.Event) -> PushSnapshot | None:
        deadline = time.monotonic() + SESSION_TIMEOUT_SECONDS + 30
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                return self._finals.get(timeout=STOP_CHECK_SECONDS)
        return None


STOP_CHECK_SECONDS = 0.5
"""How often the script, while it waits for a session to end, checks whether the tray was quit."""


def recorded(request: SessionRequest) -> str:
    """What the demo says when a session file lands: a tag is named too (`request.branch` is "" for one)."""
    return f"► the hooks recorded the push of {short_sha(request.new_sha)} to {display_line(request.ref_name)}"


def _printer(out: TextIO) -> Callable[[str], None]:
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, file=out, flush=True)

    return say


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _head(work: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _wait_for_interrupt() -> None:
    with StopSignals() as stop:
        stop.wait()
