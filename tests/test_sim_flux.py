"""The simulated Flux controllers, driven by real pushes to a real bare repo, on both API servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxmon.core.verdict import Phase
from fluxmon.sim.reconciler import Conditions
from tests.fleet import BROKEN_YAML, KUSTOMIZATIONS, Fleet, edit


def test_a_good_push_is_applied_everywhere_in_dependency_order(fleet: Fleet) -> None:
    sha = fleet.push(edit("apps/web.yaml", "replicas: 2", "replicas: 3"), "Scale web to 3")
    objects = fleet.wait_phases(sha, dict.fromkeys(("GitRepository/flux-system", *KUSTOMIZATIONS), Phase.READY))
    assert objects["Kustomization/apps"]["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    # podinfo's chart comes from this repo with reconcileStrategy: Revision, so its version carries the commit.
    fleet.wait_phases(sha, {"HelmRelease/podinfo": Phase.READY})
    podinfo = fleet.watcher.objects()["HelmRelease/podinfo"]
    assert podinfo["status"]["history"][0]["chartVersion"] == f"6.0.3+{sha[:12]}"
    # helm-controller keeps a HelmChart `<namespace>-<name>` in the source's namespace; source-controller builds it.
    assert podinfo["status"]["helmChart"] == "flux-system/apps-podinfo"
    chart = fleet.watcher.objects()["HelmChart/apps-podinfo"]
    assert chart["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "podinfo"
    assert chart["spec"]["reconcileStrategy"] == "Revision"
    assert chart["status"]["artifact"]["revision"] == f"6.0.3+{sha[:12]}"
    assert chart["status"]["observedSourceArtifactRevision"] == f"main@sha1:{sha}"
    ready = next(c for c in chart["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == (
        "ChartPackageSucceeded",
        f"packaged 'podinfo' chart with version '6.0.3+{sha[:12]}'",
    )
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
    sha = fleet.push(BROKEN_YAML, "Break web")
    ready = failed_with(fleet, sha, "Kustomization/apps", "BuildFailed")
    assert "kustomize build failed" in ready["message"]
    assert "apps/web.yaml" in ready["message"]
    assert fleet.watcher.phase("Kustomization/infrastructure", sha) is Phase.READY


def test_a_missing_path_is_an_artifact_failure(fleet: Fleet) -> None:
    before = fleet.watcher.objects()["Kustomization/apps"]
    sha = fleet.push(edit("clusters/local/apps.yaml", "path: ./apps", "path: ./nowhere"), "Point apps nowhere")
    objects = fleet.watcher.wait_for(
        lambda objs: (
            objs["Kustomization/apps"]["metadata"]["generation"] > before["metadata"]["generation"]
            and _ready(objs["Kustomization/apps"]).get("reason") == "ArtifactFailed"
        ),
        what="apps failing with ArtifactFailed at its new generation",
    )
    apps = objects["Kustomization/apps"]
    ready = _ready(apps)
    assert ready["message"].startswith("kustomization path not found: stat /tmp/kustomization-")
    assert ready["observedGeneration"] == apps["metadata"]["generation"]
    # kustomize-controller checks the path before it records the attempt (kustomization_controller.go
    # `reconcile`), and moves status.observedGeneration only on success (`finalizeStatus`).
    assert apps["status"]["lastAttemptedRevision"] == before["status"]["lastAttemptedRevision"] != f"main@sha1:{sha}"
    assert apps["status"]["observedGeneration"] == before["metadata"]["generation"]
    reconciling = next(c for c in apps["status"]["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ProgressingWithRetry")


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next((c for c in obj["status"].get("conditions", []) if c["type"] == "Ready"), {})
    return found


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
    status = objects["HelmRelease/redis"]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    # helm-controller (atomic_release.go): with upgrade.remediation.retries 2 the upgrade runs three times, each
    # failure rolled back (the last too: remediateLastFailure defaults to true when retries > 0), then it stalls.
    assert (conditions["Stalled"]["reason"], conditions["Stalled"]["message"]) == (
        "RetriesExceeded",
        "Failed to upgrade after 3 attempt(s)",
    )
    assert "Reconciling" not in conditions
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "RollbackSucceeded")
    assert conditions["Released"]["reason"] == "UpgradeFailed"
    assert (status["upgradeFailures"], status["failures"], status.get("installFailures")) == (3, 3, None)
    assert status["observedGeneration"] == objects["HelmRelease/redis"]["metadata"]["generation"]
    assert (status["history"][0]["status"], status["history"][0]["chartVersion"]) == ("deployed", "20.0.0")
    # Between the attempts it was retrying: Reconciling=ProgressingWithRetry, the failure counted so far.
    retrying = [
        obj["status"]
        for name, obj in fleet.watcher.history
        if name == "HelmRelease/redis"
        and any(
            c["type"] == "Reconciling" and c["reason"] == "ProgressingWithRetry"
            for c in obj["status"].get("conditions", [])
        )
    ]
    assert {s["upgradeFailures"] for s in retrying} == {1, 2}


def test_failures_are_recorded_as_warning_events(fleet: Fleet) -> None:
    sha = fleet.push(BROKEN_YAML, "Break web")
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


MEMCACHED = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: memcached
  namespace: data
  annotations:
    sim.fluxmon.dev/simulate: fail
spec:
  interval: 30m
  chart:
    spec:
      chart: memcached
      version: "7.x"
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: flux-system
"""


def test_a_failing_helm_install_stalls_with_retries_exceeded(fleet: Fleet) -> None:
    def add_memcached(work: Path) -> None:
        (work / "apps" / "memcached.yaml").write_text(MEMCACHED)
        edit("apps/kustomization.yaml", "  - podinfo.yaml", "  - podinfo.yaml\n  - memcached.yaml")(work)

    fleet.push(add_memcached, "Add memcached")
    objects = fleet.watcher.wait_for(
        lambda objs: (
            "HelmRelease/memcached" in objs
            and any(
                c["type"] == "Stalled"
                for c in (objs["HelmRelease/memcached"].get("status") or {}).get("conditions", [])
            )
        ),
        what="memcached stalled",
    )
    conditions = {c["type"]: c for c in objects["HelmRelease/memcached"]["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "InstallFailed"
    assert conditions["Ready"]["message"].startswith("Helm install failed for release data/memcached with chart")
    assert (conditions["Stalled"]["reason"], conditions["Stalled"]["message"]) == (
        "RetriesExceeded",
        "Failed to install after 1 attempt(s)",
    )


def test_a_failing_helm_install_with_retries_is_uninstalled_and_retried_then_stalls(fleet: Fleet) -> None:
    def add_memcached(work: Path) -> None:
        retried = MEMCACHED + "  install:\n    remediation:\n      retries: 1\n"
        (work / "apps" / "memcached.yaml").write_text(retried)
        edit("apps/kustomization.yaml", "  - podinfo.yaml", "  - podinfo.yaml\n  - memcached.yaml")(work)

    fleet.push(add_memcached, "Add memcached, retried once")
    objects = fleet.watcher.wait_for(
        lambda objs: (
            "HelmRelease/memcached" in objs
            and any(
                c["type"] == "Stalled"
                for c in (objs["HelmRelease/memcached"].get("status") or {}).get("conditions", [])
            )
        ),
        what="memcached stalled",
    )
    status = objects["HelmRelease/memcached"]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    # install remediation: uninstall, retry; the last failure is not remediated (remediateLastFailure: false).
    assert (conditions["Stalled"]["reason"], conditions["Stalled"]["message"]) == (
        "RetriesExceeded",
        "Failed to install after 2 attempt(s)",
    )
    assert conditions["Ready"]["reason"] == "InstallFailed"
    assert (status["installFailures"], status["failures"]) == (2, 2)
    seen = [
        (c["reason"], c["message"])
        for name, obj in fleet.watcher.history
        if name == "HelmRelease/memcached"
        for c in (obj.get("status") or {}).get("conditions", [])
        if c["type"] == "Reconciling" and c["reason"] == "ProgressingWithRetry"
    ]
    assert seen
    assert seen[0][1].startswith("Helm uninstall remediation for release data/memcached.v1 with chart")


def test_a_condition_keeps_its_transition_time_only_while_status_reason_and_message_hold() -> None:
    # fluxcd/pkg runtime/conditions/setter.go (Set, hasSameState): type, status, reason and message make the state.
    old = "2023-11-14T22:13:19Z"
    body: dict[str, Any] = {
        "metadata": {"generation": 2},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ValuesError", "message": "a", "lastTransitionTime": old}
            ]
        },
    }
    same = Conditions(body)
    same.set("Ready", "False", "ValuesError", "a")
    assert same.get("Ready") == {**body["status"]["conditions"][0], "observedGeneration": 2}
    changed = Conditions(body)
    changed.set("Ready", "False", "ValuesError", "b")
    assert (changed.get("Ready") or {})["lastTransitionTime"] != old
