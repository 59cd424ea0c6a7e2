"""The simulated Flux controllers, driven by real pushes to a real bare repo, on both API servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.verdict import Phase
from fluxmon.sim.cluster import bootstrap, install_crds
from fluxmon.sim.controllers import TEST_TIMINGS, FluxControllers
from fluxmon.sim.samplerepo import init_repo
from tests.clusters import Cluster, FluxWatcher
from tests.gitrepos import isolated_env

KUSTOMIZATIONS = ("Kustomization/flux-system", "Kustomization/infrastructure", "Kustomization/apps")
RELEASES = ("HelmRelease/podinfo", "HelmRelease/redis")


@dataclass
class Fleet:
    """The sample fleet repo, pushed to a bare remote that the cluster's Flux follows."""

    work: Path
    env: dict[str, str]
    cluster: Cluster
    watcher: FluxWatcher

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, env=self.env, capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    def push(self, change: Callable[[Path], None], message: str) -> str:
        """Commit `change` to the work tree, push it, and ask Flux to fetch at once (`flux reconcile source git`)."""
        change(self.work)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        self.reconcile_source()
        return self.git("rev-parse", "HEAD")

    def reconcile_source(self) -> None:
        source = self.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
        token = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 10**9:09d}Z"
        self.cluster.admin.patch(
            source,
            "flux-system",
            "flux-system",
            {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}},
        )

    def wait_phases(self, target: str, expected: dict[str, Phase]) -> dict[str, Any]:
        return self.watcher.wait_for(
            lambda objects: all(
                name in objects and self.watcher.phase(name, target) == phase for name, phase in expected.items()
            ),
            what=f"{expected} at {target[:8]}",
        )


@pytest.fixture
def fleet(cluster: Cluster, tmp_path: Path) -> Iterator[Fleet]:
    env = isolated_env(tmp_path)
    bare = init_repo(tmp_path / "fleet")
    install_crds(cluster.admin)
    bootstrap(cluster.admin, repo=bare, path="clusters/local")
    controllers = FluxControllers(cluster.admin, timings=TEST_TIMINGS)
    controllers.start()
    watcher = FluxWatcher(client=cluster.client(cluster.admin._token))
    watcher.start()
    fleet = Fleet(work=tmp_path / "fleet", env=env, cluster=cluster, watcher=watcher)
    try:
        head = fleet.git("rev-parse", "HEAD")
        fleet.wait_phases(head, dict.fromkeys(KUSTOMIZATIONS + RELEASES, Phase.READY))
        yield fleet
    finally:
        watcher.stop()
        controllers.stop()


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def change(work: Path) -> None:
        file = work / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    return change


def test_a_good_push_is_applied_everywhere_in_dependency_order(fleet: Fleet) -> None:
    sha = fleet.push(edit("apps/web.yaml", "replicas: 2", "replicas: 3"), "Scale web to 3")
    objects = fleet.wait_phases(sha, dict.fromkeys(("GitRepository/flux-system", *KUSTOMIZATIONS), Phase.READY))
    assert objects["Kustomization/apps"]["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    # podinfo's chart comes from this repo with reconcileStrategy: Revision, so its version carries the commit.
    fleet.wait_phases(sha, {"HelmRelease/podinfo": Phase.READY})
    podinfo = fleet.watcher.objects()["HelmRelease/podinfo"]
    assert podinfo["status"]["history"][0]["chartVersion"] == f"6.0.3+{sha[:12]}"
    # apps waited for infrastructure to apply the same revision first.
    assert fleet.watcher.phases_seen("Kustomization/apps", sha)[-3:] == [Phase.WAITING, Phase.PROGRESSING, Phase.READY]
    order = [
        name
        for name, obj in fleet.watcher.history
        if (obj.get("status") or {}).get("lastAppliedRevision") == f"main@sha1:{sha}"
    ]
    assert order.index("Kustomization/infrastructure") < order.index("Kustomization/apps")


def failed_with(fleet: Fleet, sha: str, name: str, reason: str) -> dict[str, Any]:
    objects = fleet.wait_phases(sha, {name: Phase.FAILED})
    ready: dict[str, Any] = next(c for c in objects[name]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reason, ready
    return ready


def test_broken_yaml_fails_the_build(fleet: Fleet) -> None:
    sha = fleet.push(edit("apps/web.yaml", "  replicas: 2", "  replicas: 2\n    oops: [unclosed"), "Break web")
    ready = failed_with(fleet, sha, "Kustomization/apps", "BuildFailed")
    assert "kustomize build failed" in ready["message"]
    assert "apps/web.yaml" in ready["message"]
    assert fleet.watcher.phase("Kustomization/infrastructure", sha) is Phase.READY


def test_a_missing_path_is_an_artifact_failure(fleet: Fleet) -> None:
    sha = fleet.push(edit("clusters/local/apps.yaml", "path: ./apps", "path: ./nowhere"), "Point apps nowhere")
    ready = failed_with(fleet, sha, "Kustomization/apps", "ArtifactFailed")
    assert "kustomization path not found" in ready["message"]


def test_an_unhealthy_workload_fails_its_health_check(fleet: Fleet) -> None:
    sha = fleet.push(
        edit(
            "apps/web.yaml",
            "  labels:\n    app: web\nspec:",
            "  labels:\n    app: web\n  annotations:\n    sim.fluxmon.dev/simulate: unhealthy\nspec:",
        ),
        "Deploy a broken web",
    )
    ready = failed_with(fleet, sha, "Kustomization/apps", "HealthCheckFailed")
    assert ready["message"] == "timeout waiting for: [Deployment/apps/web status: 'InProgress']"


def test_a_failing_helm_upgrade_retries_then_stalls(fleet: Fleet) -> None:
    sha = fleet.push(
        edit(
            "apps/redis.yaml",
            "  namespace: data\n",
            "  namespace: data\n  annotations:\n    sim.fluxmon.dev/simulate: fail\n",
        ),
        "Break redis",
    )
    fleet.wait_phases(sha, {"Kustomization/apps": Phase.READY})
    objects = fleet.watcher.wait_for(
        lambda objs: any(c["type"] == "Stalled" for c in objs["HelmRelease/redis"]["status"]["conditions"]),
        what="redis stalled",
    )
    conditions = {c["type"]: c for c in objects["HelmRelease/redis"]["status"]["conditions"]}
    assert (conditions["Stalled"]["reason"], conditions["Stalled"]["message"]) == (
        "RetriesExceeded",
        "Failed to upgrade after 3 attempt(s)",
    )
    assert conditions["Ready"]["reason"] == "UpgradeFailed"
    assert fleet.watcher.phase("HelmRelease/redis") is Phase.FAILED


def test_failures_are_recorded_as_warning_events(fleet: Fleet) -> None:
    sha = fleet.push(edit("apps/web.yaml", "  replicas: 2", "  replicas: 2\n    oops: [unclosed"), "Break web")
    failed_with(fleet, sha, "Kustomization/apps", "BuildFailed")
    events = fleet.cluster.admin.list(
        fleet.cluster.admin.resource("v1", "Event"),
        "flux-system",
        fieldSelector="involvedObject.name=apps,involvedObject.kind=Kustomization",
    )["items"]
    warnings = [e for e in events if e["type"] == "Warning" and e["reason"] == "BuildFailed"]
    assert warnings
    assert warnings[-1]["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/revision"] == f"main@sha1:{sha}"
    assert warnings[-1]["source"]["component"] == "kustomize-controller"


def test_suspended_kustomizations_are_left_alone(fleet: Fleet) -> None:
    kustomizations = fleet.cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    fleet.cluster.admin.patch(kustomizations, "flux-system", "apps", {"spec": {"suspend": True}})
    sha = fleet.push(edit("apps/web.yaml", "replicas: 2", "replicas: 4"), "Scale while suspended")
    fleet.wait_phases(sha, {"Kustomization/infrastructure": Phase.READY, "Kustomization/apps": Phase.SUSPENDED})
    assert fleet.watcher.objects()["Kustomization/apps"]["status"]["lastAppliedRevision"] != f"main@sha1:{sha}"
