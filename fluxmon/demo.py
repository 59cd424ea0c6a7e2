"""`fluxmon demo`: the whole product on this machine, with no cluster.

It creates the sample fleet and its bare remote in a temporary folder, installs the git hooks there, starts the
simulated cluster, and runs the real pipeline: git push -> hooks -> spool -> spool reader -> session manager ->
terminal view. Then it makes three real pushes: a good change (deployed), a broken manifest (failed), and the fix
(deployed). With --keep it goes on following your own pushes to that repo until Ctrl-C, and leaves it on disk.
Everything it started is stopped on exit.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from fluxmon.core import hookinstall
from fluxmon.core.kube import Cluster
from fluxmon.core.manager import SessionManager
from fluxmon.core.session import SessionSnapshot, SessionSpec, SessionState, spec_from_request
from fluxmon.core.spool import SessionRequest, SpoolReader
from fluxmon.core.store import SessionStore
from fluxmon.core.terminal import progress_lines, tree, use_colour
from fluxmon.sim.cluster import SimCluster
from fluxmon.sim.controllers import DEMO_TIMINGS, TEST_TIMINGS
from fluxmon.sim.samplerepo import init_repo

DEMO_PACE = replace(DEMO_TIMINGS, health_timeout_seconds=4.0, retry_seconds=5.0)
"""Steps slow enough to watch, failures quick enough not to bore."""
SESSION_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Step:
    title: str
    path: str
    old: str
    new: str
    expected: SessionState


SCRIPT = (
    Step(
        "a good change: scale web to 3 replicas", "apps/web.yaml", "replicas: 2", "replicas: 3", SessionState.SUCCEEDED
    ),
    Step(
        "a broken manifest: bad indentation in apps/web.yaml",
        "apps/web.yaml",
        "  replicas: 3",
        "  replicas: 3\n    oops: [unclosed",
        SessionState.FAILED,
    ),
    Step(
        "the fix: revert the broken line",
        "apps/web.yaml",
        "  replicas: 3\n    oops: [unclosed",
        "  replicas: 3",
        SessionState.SUCCEEDED,
    ),
)


def run_demo(*, keep: bool, fast: bool, out: TextIO = sys.stdout) -> int:
    """Run the scripted demo; returns 0 when every push ended as expected."""
    workdir = Path(tempfile.mkdtemp(prefix="fluxmon-demo-"))
    os.environ["FLUXMON_SPOOL_DIR"] = str(workdir / "spool")  # the hooks (and so the confirmer) inherit it
    for key, value in (
        ("GIT_AUTHOR_NAME", "fluxmon demo"),
        ("GIT_AUTHOR_EMAIL", "demo@fluxmon.invalid"),
        ("GIT_COMMITTER_NAME", "fluxmon demo"),
        ("GIT_COMMITTER_EMAIL", "demo@fluxmon.invalid"),
    ):
        os.environ.setdefault(key, value)
    colour = use_colour(out)
    say = _printer(out)
    cluster_sim: SimCluster | None = None
    pipeline: _Pipeline | None = None
    try:
        bare = init_repo(workdir / "fleet")
        work = workdir / "fleet"
        hookinstall.install(repo=work)
        say(f"► sample fleet in {work} (pushing to {bare}), git hooks installed")
        cluster_sim = SimCluster(
            repo=bare, kubeconfig=workdir / "kubeconfig", timings=TEST_TIMINGS if fast else DEMO_PACE
        )
        cluster_sim.start()
        say(f"► simulated cluster at {cluster_sim.server.url} (KUBECONFIG={workdir / 'kubeconfig'})")
        pipeline = _Pipeline(workdir, colour=colour, say=say)
        pipeline.start()
        initial = SessionSpec(
            id="initial",
            remote_url=str(bare),
            branch="main",
            commit=_head(work),
            repo=str(work),
            subject="the initial fleet",
            timeout_seconds=SESSION_TIMEOUT_SECONDS,
        )
        pipeline.manager.add(initial)
        first = pipeline.next_final()
        say(
            f"► the cluster has {'deployed' if first.state is SessionState.SUCCEEDED else first.state.value} "
            f"the initial fleet: {first.message}"
        )
        outcomes = []
        for number, step in enumerate(SCRIPT, start=1):
            say(f"\n► push {number} of {len(SCRIPT)}: {step.title}")
            _edit(work / step.path, step.old, step.new)
            _git(work, "commit", "-q", "-am", step.title)
            _git(work, "push", "-q", "origin", "main")
            snapshot = pipeline.next_final()
            say(tree(snapshot, colour=colour).rstrip())
            outcomes.append(snapshot.state is step.expected)
        ok = all(outcomes)
        say(f"\n{'✔' if ok else '✗'} demo finished: {sum(outcomes)} of {len(SCRIPT)} pushes ended as expected")
        if keep:
            say(f"► still following pushes to {work}; edit, commit and `git push` there. Ctrl-C stops.")
            _wait_for_interrupt()
        return 0 if ok else 1
    finally:
        if pipeline is not None:
            pipeline.stop()
        if cluster_sim is not None:
            cluster_sim.stop()
        if keep:
            say(f"► kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


class _Pipeline:
    """The tray's engine without the tray: spool reader -> session manager -> printed snapshots."""

    def __init__(self, workdir: Path, *, colour: bool, say: Callable[[str], None]) -> None:
        self.cluster = Cluster.connect(kubeconfig=str(workdir / "kubeconfig"))
        self.manager = SessionManager(self.cluster, store=SessionStore(workdir / "state"))
        self.reader = SpoolReader(workdir / "spool", on_session=self._spooled)
        self.finals: queue.Queue[SessionSnapshot] = queue.Queue()
        self._previous: dict[str, SessionSnapshot] = {}
        self._colour = colour
        self._say = say
        self.manager.subscribe(self._show)

    def start(self) -> None:
        self.manager.start()
        self.reader.start()

    def stop(self) -> None:
        """Producers first: the spool reader, then the sessions (and their cluster cache)."""
        self.reader.stop()
        self.manager.stop()
        self.cluster.close()

    def next_final(self) -> SessionSnapshot:
        return self.finals.get(timeout=SESSION_TIMEOUT_SECONDS + 30)

    def _spooled(self, request: SessionRequest) -> None:
        self._say(f"► the hooks recorded the push of {request.new_sha[:7]} to {request.branch}")
        self.manager.add(spec_from_request(request, default_timeout=SESSION_TIMEOUT_SECONDS))

    def _show(self, snapshot: SessionSnapshot) -> None:
        for line in progress_lines(self._previous.get(snapshot.id), snapshot, colour=self._colour):
            self._say(f"  {line}")
        self._previous[snapshot.id] = snapshot
        if snapshot.state.final and snapshot.state is not SessionState.SUPERSEDED:
            self.finals.put(snapshot)


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
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
