"""The sample fleet on a cluster under test: a real repo, a bare remote, Flux controllers, and a watcher.

`fleet` is a fixture over both API servers (via `cluster`); a test that needs other controller timings marks
itself with `@pytest.mark.timings(...)`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.verdict import Phase
from fluxmon.sim.cluster import bootstrap, install_crds
from fluxmon.sim.controllers import TEST_TIMINGS, FluxControllers
from fluxmon.sim.samplerepo import init_repo
from harness.gitrepos import edit as edit  # the tests take it from here, with the fleet's changes
from harness.gitrepos import isolated_env
from tests.clusters import Cluster, FluxWatcher

KUSTOMIZATIONS = ("Kustomization/flux-system", "Kustomization/infrastructure", "Kustomization/apps")
RELEASES = ("HelmRelease/podinfo", "HelmRelease/redis")


@dataclass
class Fleet:
    """The sample fleet repo, pushed to a bare remote that the cluster's Flux follows."""

    work: Path
    env: dict[str, str]
    cluster: Cluster
    watcher: FluxWatcher
    controllers: FluxControllers

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, env=self.env, capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    def commit_and_push(self, change: Callable[[Path], None], message: str) -> str:
        change(self.work)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def push(self, change: Callable[[Path], None], message: str) -> str:
        """Commit, push, and ask Flux to fetch at once (what `flux reconcile source git` does)."""
        sha = self.commit_and_push(change, message)
        self.reconcile_source()
        return sha

    def reconcile_source(self) -> None:
        source = self.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
        token = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 10**9:09d}Z"
        annotations = {"reconcile.fluxcd.io/requestedAt": token}
        self.cluster.admin.patch(source, "flux-system", "flux-system", {"metadata": {"annotations": annotations}})

    def wait_phases(self, target: str, expected: dict[str, Phase]) -> dict[str, Any]:
        return self.watcher.wait_for(
            lambda objects: all(
                name in objects and self.watcher.phase(name, target) == phase for name, phase in expected.items()
            ),
            what=f"{expected} at {target[:8]}",
        )


BROKEN_YAML = edit("apps/web.yaml", "  replicas: 2", "  replicas: 2\n    oops: [unclosed")
UNHEALTHY_WEB = edit(
    "apps/web.yaml",
    "  labels:\n    app: web\nspec:",
    "  labels:\n    app: web\n  annotations:\n    sim.fluxmon.dev/simulate: unhealthy\nspec:",
)
SCALE_WEB = edit("apps/web.yaml", "replicas: 2", "replicas: 3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timings(**fields): SimTimings fields for the fleet's controllers")


@pytest.fixture
def fleet(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    marker = request.node.get_closest_marker("timings")
    timings = replace(TEST_TIMINGS, **marker.kwargs) if marker else TEST_TIMINGS
    env = isolated_env(tmp_path)
    bare = init_repo(tmp_path / "fleet")
    install_crds(cluster.admin)
    bootstrap(cluster.admin, repo=bare, path="clusters/local")
    controllers = FluxControllers(cluster.admin, timings=timings)
    controllers.start()
    watcher = FluxWatcher(client=cluster.client(cluster.admin_token))  # its own client: stop() cuts its watches
    watcher.start()
    fleet = Fleet(work=tmp_path / "fleet", env=env, cluster=cluster, watcher=watcher, controllers=controllers)
    try:
        head = fleet.git("rev-parse", "HEAD")
        fleet.wait_phases(head, dict.fromkeys(KUSTOMIZATIONS + RELEASES, Phase.READY))
        yield fleet
    finally:
        watcher.stop()
        controllers.stop()
