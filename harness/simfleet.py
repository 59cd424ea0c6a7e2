"""Several simulated clusters following one bare repository at their own paths, driven by real git pushes.

The fleet of issue #13: one repository, and a cluster per environment (staging, production), each running its own
Flux on `clusters/<name>` (the sample repo's several-cluster layout, fluxmon.sim.samplerepo). Each cluster is a
real simulated API server on its own port with its own controllers; its kubeconfig context is its name, in one
kubeconfig with every context and in a file of its own (for `KUBECONFIG=a:b`). The repo is a `Repos` (a clone
`work` of a bare `remote.git`, in an isolated home), so pushes are real `git push`es through fluxmon's hooks.

    with sim_fleet(tmp_path) as fleet:                   # or the `sim_fleet` fixture: staging and production
        sha = fleet.push(SCALE_WEB, "Scale web")         # commit, push, and ask each cluster's Flux to fetch
        fleet.wait_ready("production", sha)
        fleet.down("production"); ...; fleet.up("production")
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.objects import parse_flux_object
from fluxmon.core.verdict import Phase, verdict
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import FLUX_NAMESPACE, SimCluster, SimFleet
from fluxmon.sim.controllers import TEST_TIMINGS, SimTimings
from fluxmon.sim.samplerepo import cluster_path, init_repo
from harness.gitrepos import Repos, edit, isolated_env

STAGING_AND_PRODUCTION = ("staging", "production")
WAIT_SECONDS = 30.0
FLUX_KINDS = (
    ("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization"),
    ("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease"),
)
DEPLOYED = (
    "GitRepository/flux-system",
    "Kustomization/flux-system",
    "Kustomization/infrastructure",
    "Kustomization/apps",
    "HelmRelease/podinfo",
    "HelmRelease/redis",
)
"""What the sample fleet puts on each cluster: all of it Ready at a commit is that commit deployed there."""

Change = Callable[[Path], None]

SCALE_WEB = edit("apps/base/web.yaml", "replicas: 2", "replicas: 3")
"""A good change every cluster applies (apps/base/)."""
SETTINGS, BROKEN_SETTINGS = "  logLevel: info", "  logLevel: info\n    oops: [unclosed"


def break_settings(cluster: str) -> Change:
    """Bad indentation in `apps/<cluster>/web-settings.yaml`: that cluster's `apps` fails with BuildFailed, and only
    that cluster's (the others never build that file)."""
    return edit(f"apps/{cluster}/web-settings.yaml", SETTINGS, BROKEN_SETTINGS)


def fix_settings(cluster: str) -> Change:
    """The fix of `break_settings(cluster)`."""
    return edit(f"apps/{cluster}/web-settings.yaml", BROKEN_SETTINGS, SETTINGS)


@dataclass
class FleetUnderTest:
    """The repository, its clusters, and their kubeconfigs. Cluster names are their kubeconfig contexts."""

    repos: Repos
    sim: SimFleet
    kubeconfig: Path
    """One file with every cluster's context; the first cluster's is the current one."""

    @property
    def contexts(self) -> tuple[str, ...]:
        return tuple(cluster.context for cluster in self.sim.clusters)

    @property
    def work(self) -> Path:
        return self.repos.work

    @property
    def env(self) -> dict[str, str]:
        return self.repos.env

    def cluster(self, name: str) -> SimCluster:
        return self.sim.cluster(name)

    def kubeconfig_of(self, name: str) -> Path:
        """The cluster's own kubeconfig: one context, `name`, current."""
        path = self.cluster(name).kubeconfig
        assert path is not None
        return path

    def kubeconfig_list(self, *names: str) -> str:
        """`KUBECONFIG`'s value for these clusters' own files (default: all), joined as kubectl joins them."""
        return ":".join(str(self.kubeconfig_of(name)) for name in names or self.contexts)

    def path_of(self, name: str) -> str:
        return self.cluster(name).path

    def url(self, name: str) -> str:
        return self.cluster(name).server.url

    # --- git -------------------------------------------------------------------------------------------------

    def head(self) -> str:
        return self.repos.git("rev-parse", "HEAD").stdout.strip()

    def commit_and_push(self, change: Change, message: str) -> str:
        """Change the work tree, commit, and `git push` (waiting for the hooks' confirmer); returns the commit."""
        change(self.work)
        self.repos.git("add", "-A")
        self.repos.git("commit", "-q", "-m", message)
        result = self.repos.push("-q", "origin", "main")
        assert result.returncode == 0, result.stderr
        return self.head()

    def push(self, change: Change, message: str) -> str:
        """Commit, push, and ask every cluster that is up to fetch at once (`flux reconcile source git`)."""
        sha = self.commit_and_push(change, message)
        for name in self.contexts:
            if self.cluster(name).serving:
                self.reconcile_source(name)
        return sha

    def reconcile_source(self, name: str) -> None:
        """What `flux reconcile source git flux-system` does on that cluster: a new requestedAt token."""
        client = KubeClient.from_kubeconfig(self.kubeconfig_of(name))  # over HTTP, as the flux CLI asks
        token = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 10**9:09d}Z"
        client.patch(
            client.resource("source.toolkit.fluxcd.io/v1", "GitRepository"),
            FLUX_NAMESPACE,
            FLUX_NAMESPACE,
            {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}},
        )

    # --- the clusters' state ---------------------------------------------------------------------------------

    def objects(self, name: str) -> dict[str, dict[str, Any]]:
        """The cluster's Flux objects by `Kind/name`, read from its API server's store (up or down)."""
        server = self.cluster(name).server
        found: dict[str, dict[str, Any]] = {}
        for group, version, plural, kind in FLUX_KINDS:
            listing = server.list(server.resolve(group, version, plural), version, "")
            for obj in listing["items"]:
                found[f"{kind}/{obj['metadata']['name']}"] = obj
        return found

    def phase(self, name: str, obj: str, target: str | None = None) -> Phase:
        """The verdict on one object of that cluster relative to `target` (fluxmon's own judgement)."""
        body = self.objects(name).get(obj)
        return verdict(parse_flux_object(body), target).phase if body is not None else Phase.UNKNOWN

    def wait_phases(self, name: str, target: str, expected: dict[str, Phase]) -> dict[str, dict[str, Any]]:
        """Wait (on the cluster's store changes, with a timeout) until each object has its phase at `target`."""

        def reached() -> bool:
            objects = self.objects(name)
            return all(
                key in objects and verdict(parse_flux_object(objects[key]), target).phase is phase
                for key, phase in expected.items()
            )

        if not self.cluster(name).server.wait_until(reached, WAIT_SECONDS):
            states = {key: self.phase(name, key, target).value for key in expected}
            raise AssertionError(f"{name}: timed out waiting for {expected} at {target[:8]}; now {states}")
        return self.objects(name)

    def wait_ready(self, name: str, target: str) -> dict[str, dict[str, Any]]:
        """Wait until the cluster has deployed `target`: every object of the sample fleet Ready at it."""
        return self.wait_phases(name, target, dict.fromkeys(DEPLOYED, Phase.READY))

    # --- a cluster that goes away and comes back -------------------------------------------------------------

    def down(self, name: str) -> None:
        """Take the cluster away: its API server refuses connections (its controllers stop with it)."""
        self.cluster(name).down()

    def up(self, name: str) -> None:
        """Bring it back on the same port, with every object it had; its controllers carry on."""
        self.cluster(name).up()


@contextlib.contextmanager
def sim_fleet(
    root: Path,
    *,
    clusters: Sequence[str] = STAGING_AND_PRODUCTION,
    timings: SimTimings = TEST_TIMINGS,
    hooks: bool = True,
) -> Iterator[FleetUnderTest]:
    """The sample fleet in `root/work` (pushing to `root/remote.git`), followed by a simulated cluster per name at
    `clusters/<name>`, every one Ready at the first commit when the block starts; all stopped when it ends.

    `hooks`: install fluxmon's git hooks in the clone (pushes then land in the spool, `repos.spool`).
    Kubeconfigs: `root/kubeconfig` (every context) and `root/kubeconfigs/<name>.kubeconfig`.
    """
    repos = Repos(root=root, env=isolated_env(root))
    init_repo(repos.work, remote=repos.remote, clusters=clusters)
    if hooks:
        repos.fluxmon("hook", "install")
    fleet = FleetUnderTest(
        repos=repos,
        sim=SimFleet(
            repo=repos.remote,
            clusters=[(name, cluster_path(name)) for name in clusters],
            kubeconfig=root / "kubeconfig",
            kubeconfig_dir=root / "kubeconfigs",
            timings=timings,
        ),
        kubeconfig=root / "kubeconfig",
    )
    fleet.sim.start()
    try:
        head = fleet.head()
        for name in clusters:
            fleet.wait_ready(name, head)
        yield fleet
    finally:
        fleet.sim.stop()


@pytest.fixture(name="sim_fleet")
def sim_fleet_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FleetUnderTest]:
    """Staging and production following one repository; `@pytest.mark.timings(...)` changes the controllers' pace."""
    marker = request.node.get_closest_marker("timings")
    timings = replace(TEST_TIMINGS, **marker.kwargs) if marker else TEST_TIMINGS
    with sim_fleet(tmp_path, timings=timings) as fleet:
        yield fleet
