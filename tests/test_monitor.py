"""`fluxmon wait` end to end: a real repo, real pushes, the real kubernetes client over real HTTP, both servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.kubeconfig import write_kubeconfig
from harness.running import Running
from tests.fleet import BROKEN_YAML, SCALE_WEB, UNHEALTHY_WEB, Fleet


def wait_args(fleet: Fleet, *extra: str, kubeconfig: Path | None = None, timeout: str = "30s") -> list[str]:
    return [
        sys.executable,
        "-m",
        "fluxmon",
        "wait",
        "--repo",
        str(fleet.work),
        "--kubeconfig",
        str(kubeconfig or fleet.cluster.kubeconfig),
        "--timeout",
        timeout,
        *extra,
    ]


def run_wait(fleet: Fleet, *extra: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        wait_args(fleet, *extra, **options), env=fleet.env, capture_output=True, text=True, timeout=120, check=False
    )


def final(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return record


def phases(record: dict[str, Any]) -> dict[str, str]:
    return {f"{r['kind']}/{r['name']}": r["phase"] for r in record["resources"]}


def test_a_deployed_push_exits_0(fleet: Fleet) -> None:
    sha = fleet.commit_and_push(SCALE_WEB, "Scale web to 3")
    result = run_wait(fleet, "--reconcile", "--json")
    assert result.returncode == 0, result.stderr
    assert f"✔ {sha[:7]} deployed: 6 resources ready" in result.stderr.splitlines()[-1]
    record = final(result)
    assert record["state"] == "succeeded"
    assert set(phases(record).values()) == {"Ready"}
    assert "requested a reconcile of GitRepository/flux-system" in record["notes"]


def test_a_failed_build_fails_fast_naming_the_object_and_the_error(fleet: Fleet) -> None:
    fleet.commit_and_push(BROKEN_YAML, "Break web")
    result = run_wait(fleet, "--reconcile", "--json")
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("✗ Kustomization flux-system/apps failed: BuildFailed: kustomize build failed")
    assert "apps/web.yaml" in last
    record = final(result)
    # Mixed outcome: infrastructure deployed the push, apps did not.
    assert phases(record)["Kustomization/infrastructure"] == "Ready"
    assert phases(record)["Kustomization/apps"] == "Failed"
    apps = next(r for r in record["resources"] if r["name"] == "apps")
    assert apps["hint"]["docs"].endswith("kustomizations/#path")
    assert "yaml: line" in apps["error"]


@pytest.mark.timings(build_seconds=0.4)
def test_a_dependent_waits_for_its_dependency_then_succeeds(fleet: Fleet) -> None:
    fleet.commit_and_push(SCALE_WEB, "Scale web to 3")
    result = run_wait(fleet, "--reconcile", "--json")
    assert result.returncode == 0, result.stderr
    apps_phases = [phases(json.loads(line)).get("Kustomization/apps") for line in result.stdout.splitlines()]
    assert "Waiting" in apps_phases
    assert apps_phases.index("Waiting") < len(apps_phases) - 1
    assert apps_phases[-1] == "Ready"
    assert "dependency 'flux-system/infrastructure' is not ready" in result.stderr


@pytest.mark.timings(health_timeout_seconds=120)
def test_a_timeout_ends_with_a_partial_report(fleet: Fleet) -> None:
    fleet.commit_and_push(UNHEALTHY_WEB, "Deploy a web that never gets ready")
    result = run_wait(fleet, "--reconcile", "--json", timeout="3s")
    assert result.returncode == 3
    last = result.stderr.splitlines()[-1]
    assert "timed out after 3s:" in last
    assert "still pending: Kustomization/apps (Progressing: Progressing)" in last
    record = final(result)
    assert record["state"] == "timed-out"
    assert phases(record)["Kustomization/infrastructure"] == "Ready"


def test_with_the_controllers_down_nothing_moves_and_the_reason_is_given(fleet: Fleet) -> None:
    fleet.controllers.stop()
    sha = fleet.commit_and_push(SCALE_WEB, "Scale web while Flux is down")
    result = run_wait(fleet, "--json", timeout="2s")
    assert result.returncode == 3
    last = result.stderr.splitlines()[-1]
    assert f"GitRepository/flux-system/flux-system never fetched {sha[:7]}" in last
    assert "is source-controller running?" in last


def test_a_push_no_source_follows_exits_4(fleet: Fleet) -> None:
    result = run_wait(fleet, "--remote", "https://bot:s3cret@example.invalid/other.git", "--branch", "main")
    assert result.returncode == 4
    assert "no Flux source follows https://***@example.invalid/other.git main" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_a_kind_that_is_forbidden_degrades_that_kind_only(fleet: Fleet, tmp_path: Path) -> None:
    cluster = fleet.cluster
    if cluster.sim is not None:
        cluster.sim.tokens = {"limited-token": "limited"}
        cluster.sim.allow_anonymous = True  # the controllers (anonymous here) keep their access
        cluster.sim.authorizer = lambda user, verb, group, resource, namespace: (
            not (user == "limited" and resource == "helmreleases")
        )
        token = "limited-token"
        kubeconfig = write_kubeconfig(tmp_path / "limited", server=cluster.url, token=token)
    else:
        grant_read_except_helmreleases(cluster.admin)
        ca = tmp_path / "ca.crt"
        ca.write_bytes(cluster.ca_data)
        kubeconfig = write_kubeconfig(tmp_path / "limited", server=cluster.url, token=cluster.limited_token, ca_file=ca)
    fleet.commit_and_push(SCALE_WEB, "Scale web")
    fleet.reconcile_source()
    result = run_wait(fleet, "--json", kubeconfig=kubeconfig)
    assert result.returncode == 0, result.stderr
    record = final(result)
    assert not any(r["kind"] == "HelmRelease" for r in record["resources"])
    (note,) = [n for n in record["notes"] if n.startswith("HelmRelease:")]
    assert "may not list helmreleases.helm.toolkit.fluxcd.io" in note
    assert "fluxmon needs get, list and watch" in note


def grant_read_except_helmreleases(admin: KubeClient) -> None:
    """RBAC on the real server: the `limited` user may read sources and Kustomizations, not HelmReleases."""
    roles = admin.resource("rbac.authorization.k8s.io/v1", "ClusterRole")
    bindings = admin.resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
    admin.create(
        roles,
        "",
        {
            "metadata": {"name": "fluxmon-limited"},
            "rules": [
                {
                    "apiGroups": ["source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"],
                    "resources": ["*"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
            ],
        },
    )
    admin.create(
        bindings,
        "",
        {
            "metadata": {"name": "fluxmon-limited"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fluxmon-limited"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "limited"}],
        },
    )


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_the_cluster_lost_mid_session_and_back(fleet: Fleet) -> None:
    assert fleet.cluster.sim is not None
    fleet.controllers.stop()
    fleet.commit_and_push(SCALE_WEB, "Scale web")
    following = Running(wait_args(fleet, "--json", "--reconcile"), env=fleet.env)
    try:
        following.expect_snapshot(
            lambda s: s["state"] == "waiting-for-source" and bool(s["resources"]), "waiting for the source"
        )
        fleet.cluster.sim.stop()
        following.expect_stderr("cannot reach the API server")
        fleet.cluster.sim.start()
        fleet.controllers.start()
        assert following.finish() == 0, following.stderr
    finally:
        following.kill()
    assert "deployed" in following.stderr[-1]


def wait_outside_a_repo(kubeconfig: Path, cwd: Path, *overrides: str, timeout: str) -> subprocess.CompletedProcess[str]:
    """`fluxmon wait` on a made-up push; later flags in `overrides` win, as argparse keeps the last value."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxmon",
            "wait",
            "--kubeconfig",
            str(kubeconfig),
            "--remote",
            "/x",
            "--branch",
            "main",
            "--commit",
            "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170",
            "--timeout",
            timeout,
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_an_unreachable_cluster_is_a_cluster_error(tmp_path: Path) -> None:
    server = SimApiServer()
    server.start()
    url = server.url
    server.stop()  # nothing listens there any more
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=url)
    result = wait_outside_a_repo(kubeconfig, tmp_path, timeout="2s")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"fluxmon: Cluster unreachable: cannot reach the API server of context 'fluxmon-sim' at {url}"
    )


def test_flux_not_installed_is_said_at_once(tmp_path: Path) -> None:
    server = SimApiServer()  # a cluster without the Flux CRDs
    server.start()
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=server.url)
        result = wait_outside_a_repo(kubeconfig, tmp_path, timeout="5m")
    finally:
        server.stop()
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        "fluxmon: Flux is not installed: Flux is not installed in context 'fluxmon-sim'"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--kubeconfig", "/nonexistent/kubeconfig"],
            "fluxmon: kubeconfig problem: no kubeconfig at /nonexistent/kubeconfig",
        ),
        (["--context", "nope"], "has no context 'nope' (its contexts: fluxmon-sim)"),
        (["--timeout", "soon"], "fluxmon: Cannot read input: --timeout: expected a duration"),
        (["--commit", "xyz"], "fluxmon: Cannot read input: --commit: not a commit sha"),
    ],
)
def test_bad_setup_is_one_clear_line(tmp_path: Path, args: list[str], expected: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server="http://127.0.0.1:9")
    result = wait_outside_a_repo(kubeconfig, tmp_path, *args, timeout="5m")
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
