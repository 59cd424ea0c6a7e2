"""`fluxmon wait` on the shapes the real Flux controllers write, on the simulated and the real API server.

Each case is a real push to the sample fleet, followed by the simulated controllers (which write what Flux
writes: see sim/source_controller.py, kustomize_controller.py, helm_controller.py) and by `fluxmon wait` in its
own process. "Fails fast" means the session ends `failed` as soon as the controller has written the failure,
with a timeout far longer than the case needs, so that a verdict that waits for more ends `timed-out` instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.verdict import Phase
from harness.running import Running
from tests.fleet import Fleet, edit

WAIT_TIMEOUT = "60s"
"""Far longer than any case needs: a session that does not fail fast runs into it and ends timed-out."""


def wait_args(fleet: Fleet, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fluxmon",
        "wait",
        "--repo",
        str(fleet.work),
        "--kubeconfig",
        str(fleet.cluster.kubeconfig),
        "--timeout",
        WAIT_TIMEOUT,
        "--json",
        *extra,
    ]


def run_wait(fleet: Fleet, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        wait_args(fleet, *extra), env=fleet.env, capture_output=True, text=True, timeout=180, check=False
    )


def final(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return record


def resource(record: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in record["resources"] if (r["kind"], r["name"]) == (kind, name))
    return found


def failed_on(result: subprocess.CompletedProcess[str], kind: str, name: str) -> dict[str, Any]:
    """The push failed (not timed out), naming `kind/name`; returns that resource's record."""
    assert result.returncode == 1, result.stderr
    record = final(result)
    assert record["state"] == "failed", record
    entry = resource(record, kind, name)
    assert entry["phase"] == "Failed", entry
    return entry


def add_files(files: dict[str, str], *edits: Any) -> Any:
    def change(work: Path) -> None:
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        for apply in edits:
            apply(work)

    return change


# --- kustomize-controller --------------------------------------------------------------------------------------

BROKEN_APP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-v2
  namespace: apps
data:
  greeting: [unclosed
"""


def test_a_push_that_edits_a_kustomization_and_breaks_its_build_fails_fast(fleet: Fleet) -> None:
    # The push moves apps to a new path whose YAML is broken: the parent applies the new spec (generation 2), and
    # kustomize-controller fails the build with status.observedGeneration still at 1.
    sha = fleet.commit_and_push(
        add_files(
            {"apps-v2/kustomization.yaml": "resources:\n  - web.yaml\n", "apps-v2/web.yaml": BROKEN_APP},
            edit("clusters/local/apps.yaml", "path: ./apps", "path: ./apps-v2"),
        ),
        "Move apps to apps-v2",
    )
    result = run_wait(fleet, "--reconcile")
    apps = failed_on(result, "Kustomization", "apps")
    assert apps["reason"] == "BuildFailed"
    assert "kustomize build failed" in result.stderr.splitlines()[-1]
    status = fleet.watcher.objects()["Kustomization/apps"]
    assert status["metadata"]["generation"] == 2
    assert status["status"]["observedGeneration"] == 1
    assert status["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"


def test_a_push_that_adds_a_kustomization_whose_build_fails_fails_fast(fleet: Fleet) -> None:
    extra = (
        fleet.work.joinpath("clusters/local/apps.yaml")
        .read_text()
        .replace("name: apps", "name: extra")
        .replace("path: ./apps", "path: ./extra")
    )
    fleet.commit_and_push(
        add_files(
            {
                "clusters/local/extra.yaml": extra,
                "extra/kustomization.yaml": "resources:\n  - app.yaml\n",
                "extra/app.yaml": BROKEN_APP,
            }
        ),
        "Add extra, broken",
    )
    result = run_wait(fleet, "--reconcile")
    entry = failed_on(result, "Kustomization", "extra")
    assert entry["reason"] == "BuildFailed"
    created = fleet.watcher.objects()["Kustomization/extra"]
    # A new object: status.observedGeneration is still the CRD default, the failure is at generation 1.
    assert created["status"]["observedGeneration"] == -1
    ready = next(c for c in created["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["observedGeneration"]) == ("False", 1)


# --- source-controller -----------------------------------------------------------------------------------------


def test_a_branch_the_remote_does_not_have_fails_fast(fleet: Fleet) -> None:
    # A source follows release-2, which was never pushed (a push to another remote, or one that was rejected):
    # `fluxmon wait` for a commit on release-2 fails on the source, with source-controller's own message.
    bare = fleet.git("remote", "get-url", "origin")
    release = f"""\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: release
  namespace: flux-system
spec:
  interval: 1m0s
  url: file://{bare}
  ref:
    branch: release-2
"""
    applied = fleet.push(add_files({"clusters/local/release.yaml": release}), "Follow release-2 too")
    fleet.wait_phases(applied, {"Kustomization/flux-system": Phase.READY})
    fleet.git("switch", "-q", "-c", "release-2")
    fleet.git("commit", "-q", "--allow-empty", "-m", "Release 2")
    unpushed = fleet.git("rev-parse", "HEAD")
    result = run_wait(fleet, "--remote", bare, "--branch", "release-2", "--commit", unpushed, "--reconcile")
    entry = failed_on(result, "GitRepository", "release")
    assert entry["reason"] == "GitOperationFailed"
    repository = fleet.watcher.objects()["GitRepository/release"]
    conditions = {c["type"]: c for c in repository["status"]["conditions"]}
    expected = (
        f"failed to checkout and determine revision: unable to clone 'file://{bare}': "
        f'couldn\'t find remote ref "refs/heads/release-2"'
    )
    assert (conditions["FetchFailed"]["reason"], conditions["FetchFailed"]["message"]) == (
        "GitOperationFailed",
        expected,
    )
    assert (conditions["Ready"]["status"], conditions["Ready"]["message"]) == ("False", expected)
    # A new object that never fetched: Reconciling keeps "processing object: new generation -1 -> 1", now with
    # ProgressingWithRetry, and status.observedGeneration keeps the CRD default.
    assert (conditions["Reconciling"]["reason"], conditions["Reconciling"]["message"]) == (
        "ProgressingWithRetry",
        "processing object: new generation -1 -> 1",
    )
    assert repository["status"]["observedGeneration"] == -1


@pytest.mark.timings(fetch_seconds=3.0)
def test_a_reconcile_request_while_the_source_is_busy_is_not_lost(fleet: Fleet) -> None:
    # The source is fetching one push when the next one is pushed and a reconcile requested. That request must
    # start another fetch once this one ends; before, it was marked handled and the second push never fetched.
    first = fleet.push(edit("apps/web.yaml", "replicas: 2", "replicas: 3"), "Scale web to 3")
    fleet.watcher.wait_for(
        lambda objs: any(
            c["type"] == "Reconciling" and first in c["message"]
            for c in objs["GitRepository/flux-system"]["status"].get("conditions", [])
        ),
        what="the source fetching the first push",
    )
    second = fleet.push(edit("apps/web.yaml", "replicas: 3", "replicas: 4"), "Scale web to 4")
    result = run_wait(fleet)  # no --reconcile: the request above is the only one
    assert result.returncode == 0, result.stderr
    assert f"✔ {second[:7]} deployed" in result.stderr.splitlines()[-1]


# --- helm-controller -------------------------------------------------------------------------------------------

OCI_PODINFO = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: podinfo-oci
  namespace: apps
spec:
  interval: 10m
  url: oci://ghcr.io/stefanprodan/charts/podinfo
  ref:
    tag: 6.6.1
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo-oci
  namespace: apps
spec:
  interval: 10m
  chartRef:
    kind: OCIRepository
    name: podinfo-oci
  values:
    replicaCount: 2
"""


def test_a_push_that_deploys_a_helm_release_from_an_oci_chart_deploys(fleet: Fleet) -> None:
    fleet.commit_and_push(
        add_files(
            {"apps/podinfo-oci.yaml": OCI_PODINFO},
            edit("apps/kustomization.yaml", "  - podinfo.yaml", "  - podinfo.yaml\n  - podinfo-oci.yaml"),
        ),
        "Add podinfo from its OCI chart",
    )
    result = run_wait(fleet, "--reconcile")
    assert result.returncode == 0, result.stderr
    record = final(result)
    assert record["state"] == "succeeded"
    assert resource(record, "HelmRelease", "podinfo-oci")["phase"] == "Ready"
    objects = fleet.watcher.objects()
    release = objects["HelmRelease/podinfo-oci"]["status"]
    digest = objects["OCIRepository/podinfo-oci"]["status"]["artifact"]["revision"].partition("@")[2]
    assert digest.startswith("sha256:")
    # helm-controller's mutateChartWithSourceRevision: the first 12 hex of the digest, not of a commit.
    assert release["history"][0]["chartVersion"] == f"6.6.1+{digest.removeprefix('sha256:')[:12]}"
    assert release["lastAttemptedRevisionDigest"] == digest


MEMCACHED = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: memcached
  namespace: data
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


def test_a_push_that_adds_a_helm_release_deploys_through_its_new_helm_chart(fleet: Fleet) -> None:
    # helm-controller first creates the HelmChart; until source-controller has built it the release waits
    # (SourceNotReady), which is not a failure.
    fleet.commit_and_push(
        add_files(
            {"apps/memcached.yaml": MEMCACHED},
            edit("apps/kustomization.yaml", "  - podinfo.yaml", "  - podinfo.yaml\n  - memcached.yaml"),
        ),
        "Add memcached",
    )
    result = run_wait(fleet, "--reconcile")
    assert result.returncode == 0, result.stderr
    assert resource(final(result), "HelmRelease", "memcached")["phase"] == "Ready"
    chart = fleet.watcher.objects()["HelmChart/data-memcached"]
    assert chart["status"]["artifact"]["revision"] == "7.0.0"


def test_a_push_with_a_values_error_fails_fast(fleet: Fleet) -> None:
    fleet.commit_and_push(
        edit(
            "apps/redis.yaml",
            "  values:\n",
            "  valuesFrom:\n    - kind: ConfigMap\n      name: redis-values\n  values:\n",
        ),
        "Take redis values from a ConfigMap nobody created",
    )
    result = run_wait(fleet, "--reconcile")
    entry = failed_on(result, "HelmRelease", "redis")
    assert entry["reason"] == "ValuesError"
    redis = fleet.watcher.objects()["HelmRelease/redis"]
    conditions = {c["type"]: c for c in redis["status"]["conditions"]}
    assert conditions["Ready"]["message"] == (
        "could not resolve ConfigMap chart values reference 'data/redis-values' with key 'values.yaml': "
        'configmaps "redis-values" not found'
    )
    # helm-controller keeps Reconciling as it was set before the prerequisites were checked.
    assert (conditions["Reconciling"]["reason"], conditions["Reconciling"]["message"]) == (
        "Progressing",
        "Fulfilling prerequisites",
    )
    assert redis["status"]["observedGeneration"] == redis["metadata"]["generation"] - 1


@pytest.mark.timings(install_seconds=0.3)
def test_an_upgrade_that_fails_shows_retrying_then_fails_when_the_retries_are_spent(fleet: Fleet) -> None:
    fleet.commit_and_push(
        edit(
            "apps/redis.yaml",
            "  namespace: data\n",
            "  namespace: data\n  annotations:\n    sim.fluxmon.dev/simulate: fail\n",
        ),
        "Break redis",
    )
    following = Running(wait_args(fleet, "--reconcile"), env=fleet.env)
    try:
        retrying = following.expect_snapshot(
            lambda s: any(
                (r["kind"], r["name"]) == ("HelmRelease", "redis") and "upgrade failed, retry 1 of 2" in r["message"]
                for r in s["resources"]
            ),
            "redis retrying its upgrade",
        )
        assert retrying["state"] == "reconciling"
        assert following.finish() == 1, following.stderr
    finally:
        following.kill()
    record = json.loads(following.stdout[-1])
    assert record["state"] == "failed"
    assert resource(record, "HelmRelease", "redis")["phase"] == "Failed"
    # The third failure spent the retries (upgradeFailures 3 > retries 2); helm-controller then rolls it back
    # and stalls.
    objects = fleet.watcher.wait_for(
        lambda objs: any(c["type"] == "Stalled" for c in objs["HelmRelease/redis"]["status"]["conditions"]),
        what="redis stalled",
    )
    status = objects["HelmRelease/redis"]["status"]
    assert status["upgradeFailures"] == 3
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["reason"], stalled["message"]) == ("RetriesExceeded", "Failed to upgrade after 3 attempt(s)")
    assert fleet.watcher.phase("HelmRelease/redis") is Phase.FAILED
