"""Several simulated clusters following one repository at their own paths (issue #13's fleet): real pushes, each
cluster's own controllers applying its own path, a manifest only production applies, a cluster that goes down and
comes back, their kubeconfigs, and `fluxmon sim --cluster` as a user runs it."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fluxmon.core.cluster import ClusterTarget
from fluxmon.core.engine import Engine
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import SessionSpec, SessionState
from fluxmon.core.verdict import Phase
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import SimFleet
from fluxmon.sim.controllers import TEST_TIMINGS, build_manifests
from fluxmon.sim.samplerepo import FILES, fleet_files, init_repo
from harness.gitrepos import isolated_env
from harness.simfleet import SCALE_WEB, FleetUnderTest, break_settings, fix_settings, sim_fleet


def settings_of(fleet: FleetUnderTest, name: str) -> dict[str, str]:
    """The `web-settings` ConfigMap's data on that cluster, read over HTTP with the cluster's own kubeconfig."""
    client = KubeClient.from_kubeconfig(fleet.kubeconfig_of(name))
    data: dict[str, str] = client.get(client.resource("v1", "ConfigMap"), "apps", "web-settings")["data"]
    return data


# --- the sample repository's layout (no cluster) -------------------------------------------------------------


def test_the_one_cluster_layout_is_unchanged_and_the_fleet_has_an_overlay_per_cluster() -> None:
    assert fleet_files() == FILES
    files = {name: text.encode() for name, text in fleet_files(("staging", "production")).items()}
    assert not any(name.startswith("clusters/local/") for name in files)
    for name in ("staging", "production"):
        apps = yaml.safe_load(files[f"clusters/{name}/apps.yaml"])
        assert apps["spec"]["path"] == f"./apps/{name}"
        assert apps["spec"]["dependsOn"] == [{"name": "infrastructure"}]
        built = {(obj["kind"], obj["metadata"]["name"]): obj for obj in build_manifests(files, f"apps/{name}")}
        # The overlay is the shared base (a Deployment, a Service, two HelmReleases) plus its own settings.
        assert set(built) == {
            ("Deployment", "web"),
            ("Service", "web"),
            ("HelmRelease", "redis"),
            ("HelmRelease", "podinfo"),
            ("ConfigMap", "web-settings"),
        }
        assert built[("ConfigMap", "web-settings")]["data"]["environment"] == name


@pytest.mark.parametrize(
    ("clusters", "message"),
    [
        (("staging", "Production"), "cluster name 'Production': use lower-case letters"),
        (("staging", "base"), "and not 'base'"),
        (("prod", "prod"), "cluster names repeat: prod, prod"),
        (("../etc",), "cluster name '../etc'"),
    ],
)
def test_init_repo_refuses_a_cluster_name_that_cannot_be_a_context_and_a_folder(
    tmp_path: Path, clusters: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        init_repo(tmp_path / "fleet", clusters=clusters)
    assert not (tmp_path / "fleet").exists()


# --- two clusters, one repository ------------------------------------------------------------------------------


def test_one_push_lands_on_both_clusters_each_applying_its_own_path(sim_fleet: FleetUnderTest) -> None:
    assert sim_fleet.contexts == ("staging", "production")
    assert sim_fleet.url("staging") != sim_fleet.url("production")
    sha = sim_fleet.push(SCALE_WEB, "Scale web to 3")
    for name in sim_fleet.contexts:
        objects = sim_fleet.wait_ready(name, sha)
        apps = objects["Kustomization/apps"]
        assert apps["spec"]["path"] == f"./apps/{name}"
        assert apps["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
        assert objects["Kustomization/flux-system"]["spec"]["path"] == f"./clusters/{name}"
        assert settings_of(sim_fleet, name)["environment"] == name
    # The push went through fluxmon's hooks, once, whatever the number of clusters.
    assert [session["ref"]["new"] for session in sim_fleet.repos.sessions()] == [sha]


def test_a_manifest_only_production_applies_fails_production_alone_and_the_fix_lands_on_both(
    sim_fleet: FleetUnderTest,
) -> None:
    broken = sim_fleet.push(break_settings("production"), "Production: more settings")
    objects = sim_fleet.wait_phases("production", broken, {"Kustomization/apps": Phase.FAILED})
    ready = next(c for c in objects["Kustomization/apps"]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BuildFailed"
    assert "apps/production/web-settings.yaml" in ready["message"]
    assert sim_fleet.phase("production", "Kustomization/infrastructure", broken) is Phase.READY
    sim_fleet.wait_ready("staging", broken)  # staging applied the very same commit

    fixed = sim_fleet.push(fix_settings("production"), "Production: fix the settings")
    for name in sim_fleet.contexts:
        sim_fleet.wait_ready(name, fixed)


def test_a_cluster_that_goes_down_comes_back_on_the_same_port_with_its_objects(sim_fleet: FleetUnderTest) -> None:
    url = sim_fleet.url("production")
    port = int(url.rsplit(":", 1)[1])
    sim_fleet.down("production")
    assert not sim_fleet.cluster("production").serving
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    sha = sim_fleet.push(SCALE_WEB, "Scale web while production is away")
    sim_fleet.wait_ready("staging", sha)  # one cluster away holds back none of the others
    assert sim_fleet.phase("production", "Kustomization/apps", sha) is Phase.PENDING  # kept, at the old commit

    sim_fleet.up("production")
    assert sim_fleet.url("production") == url  # the same kubeconfig reaches it again
    sim_fleet.reconcile_source("production")
    sim_fleet.wait_ready("production", sha)


def test_the_engine_follows_one_push_on_both_while_production_goes_down_and_comes_back(
    sim_fleet: FleetUnderTest,
) -> None:
    """The harness with the real Engine, one target per context of the shared kubeconfig: production drops out
    mid-session, staging's verdict does not wait for it, and production's comes once it is back."""
    targets = [ClusterTarget(context=name, kubeconfig=str(sim_fleet.kubeconfig)) for name in sim_fleet.contexts]
    engine = Engine(targets=targets)
    pushes: queue.Queue[PushSnapshot] = queue.Queue()
    engine.subscribe(pushes.put)
    engine.start()
    try:
        sim_fleet.down("production")
        sha = sim_fleet.push(SCALE_WEB, "Scale web while production is away")
        engine.add(
            SessionSpec(
                id="p1", remote_url=str(sim_fleet.repos.remote), branch="main", commit=sha, repo=str(sim_fleet.work)
            )
        )
        while True:
            push = pushes.get(timeout=30)
            staging, production = push.cluster("staging"), push.cluster("production")
            assert staging is not None
            assert production is not None
            if staging.state is SessionState.SUCCEEDED:
                break
        assert not production.state.final
        assert not push.state.final  # deployed only when every cluster that follows it has applied it

        sim_fleet.up("production")
        sim_fleet.reconcile_source("production")
        final = engine.wait_final("p1", timeout=60)
        assert final is not None
        assert final.state is SessionState.SUCCEEDED, final.message
        assert final.message == "deployed to staging, production"
    finally:
        engine.stop()


def test_wait_on_two_contexts_of_two_kubeconfig_files_names_both_then_the_broken_one(tmp_path: Path) -> None:
    """The issue's own case: `fluxmon wait --context dev --context prod` with `KUBECONFIG=dev.kc:prod.kc`, each
    file holding its cluster's context."""
    with sim_fleet(tmp_path, clusters=("dev", "prod")) as fleet:
        env = {**fleet.env, "KUBECONFIG": fleet.kubeconfig_list("dev", "prod")}

        def wait() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "fluxmon", "wait", "--context", "dev", "--context", "prod", "--timeout", "60"],
                cwd=fleet.work, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip

        fleet.push(SCALE_WEB, "Scale web")
        deployed = wait()
        assert deployed.returncode == 0, deployed.stderr
        assert "deployed to dev, prod" in deployed.stdout + deployed.stderr

        fleet.push(break_settings("prod"), "prod: more settings")
        failed = wait()
        assert failed.returncode == 1, failed.stderr
        assert "failed on prod" in failed.stdout + failed.stderr


# --- kubeconfigs -----------------------------------------------------------------------------------------------


def test_one_kubeconfig_names_every_cluster_and_each_has_a_file_of_its_own(sim_fleet: FleetUnderTest) -> None:
    merged = yaml.safe_load(sim_fleet.kubeconfig.read_text())
    assert [context["name"] for context in merged["contexts"]] == ["staging", "production"]
    assert merged["current-context"] == "staging"
    assert sim_fleet.kubeconfig.stat().st_mode & 0o777 == 0o600
    for name in sim_fleet.contexts:
        own = yaml.safe_load(sim_fleet.kubeconfig_of(name).read_text())
        # Cluster, user and context all take the cluster's name, so files merged as KUBECONFIG=a:b never collide.
        assert [entry["name"] for key in ("clusters", "users", "contexts") for entry in own[key]] == [name] * 3
        assert own["current-context"] == name
        client = KubeClient.from_kubeconfig(sim_fleet.kubeconfig, context=name)
        configmaps = client.resource("v1", "ConfigMap")
        assert client.get(configmaps, "apps", "web-settings")["data"]["environment"] == name
    assert sim_fleet.kubeconfig_list() == (
        f"{sim_fleet.kubeconfig_of('staging')}:{sim_fleet.kubeconfig_of('production')}"
    )


def test_a_fleet_whose_second_port_is_taken_stops_the_first_and_says_which(tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "fleet", clusters=("staging", "production"))
    free, taken = adjacent_ports()
    with taken:
        fleet = SimFleet(
            repo=bare,
            clusters=[("staging", "clusters/staging"), ("production", "clusters/production")],
            kubeconfig=tmp_path / "kubeconfig",
            port=free,
            timings=TEST_TIMINGS,
        )
        with pytest.raises(OSError, match=f"cannot serve cluster production on port {free + 1}: "):
            fleet.start()
    assert not fleet.cluster("staging").serving  # no thread or port left behind (the autouse guard checks threads)
    assert not (tmp_path / "kubeconfig").exists()


def adjacent_ports() -> tuple[int, socket.socket]:
    """A free port, and a listening socket on the port after it."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", free + 1))
        except OSError:
            taken.close()
            continue
        taken.listen()
        return free, taken


# --- `fluxmon sim --cluster` -----------------------------------------------------------------------------------


def fluxmon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxmon", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_sim_serves_two_clusters_each_with_its_context_until_sigterm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    init = fluxmon(env, "sim", "init-repo", str(tmp_path / "fleet"), "--cluster", "staging", "--cluster", "production")
    assert init.returncode == 0, init.stderr
    assert "--cluster staging --cluster production" in init.stdout
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "fluxmon", "sim", "--repo", str(tmp_path / "fleet.git"), "--fast",
            "--cluster", "staging", "--cluster", "production", "--kubeconfig-dir", str(tmp_path / "kc"),
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        lines = [sim.stdout.readline() for _ in range(3)]  # the last one comes once every cluster is ready
        assert lines[0].startswith("fluxmon sim: cluster staging ready at http://127.0.0.1:"), lines
        assert lines[0].rstrip().endswith("at clusters/staging")
        assert lines[1].startswith("fluxmon sim: cluster production ready at http://127.0.0.1:"), lines
        staging, production = tmp_path / "kc" / "staging.kubeconfig", tmp_path / "kc" / "production.kubeconfig"
        assert lines[2] == f"fluxmon sim: export KUBECONFIG={staging}:{production}\n"
        for name, kubeconfig in (("staging", staging), ("production", production)):
            client = KubeClient.from_kubeconfig(kubeconfig)
            kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
            flux_system = client.get(kustomizations, "flux-system", "flux-system")
            assert flux_system["spec"]["path"] == f"./clusters/{name}"
    finally:
        sim.send_signal(signal.SIGTERM)
        _, stderr = sim.communicate(timeout=30)
    assert sim.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "Staging", "--kubeconfig", "kc"], "--cluster: cluster name 'Staging': use lower-case"),
        (["--cluster", "a", "--cluster", "a", "--kubeconfig", "kc"], "--cluster: cluster names repeat: a, a"),
        (["--cluster", "a", "--path", "x", "--kubeconfig", "kc"], "give each cluster its path as --cluster NAME=PATH"),
        (["--cluster", "a"], "--kubeconfig OUT (one file, a context per cluster) or --kubeconfig-dir DIR"),
        (["--cluster", "a=", "--kubeconfig", "kc"], "--cluster a=: the path after '=' is empty"),
        (["--kubeconfig-dir", "kc"], "--kubeconfig-dir writes one file per --cluster"),
        (["--port", "-1", "--kubeconfig", "kc"], "--port -1: give a port from 1 to 65535"),
        (["--port", "65535", "--cluster", "a", "--cluster", "b", "--kubeconfig", "kc"], "--port 65535: give a port"),
    ],
)
def test_sim_says_what_is_wrong_with_its_clusters_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    bare = init_repo(tmp_path / "fleet")
    result = fluxmon(isolated_env(tmp_path), "sim", "--repo", str(bare), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_sim_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "fleet")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one = fluxmon(isolated_env(tmp_path), "sim", "--repo", str(bare), "--port", port, "--kubeconfig", "kc")
        two = fluxmon(
            isolated_env(tmp_path), "sim", "--repo", str(bare), "--port", port, "--cluster", "a", "--kubeconfig", "kc"
        )
    for result, who in ((one, "cluster fluxmon-sim"), (two, "cluster a")):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"fluxmon: Cannot read input: cannot serve {who} on port {port}: "), (
            result.stderr
        )
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_wait_with_one_cluster_down_reports_the_other_and_times_out_naming_the_unreachable_one(
    sim_fleet: FleetUnderTest,
) -> None:
    """An unreachable cluster holds back no verdict and counts as timed out: exit 3, with a per-cluster report."""
    sim_fleet.down("production")
    good = sim_fleet.push(SCALE_WEB, "Scale web")
    waited = subprocess.run(
        [sys.executable, "-m", "fluxmon", "wait", "--all-contexts", "--timeout", "8s"],
        cwd=sim_fleet.work, env={**sim_fleet.env, "KUBECONFIG": str(sim_fleet.kubeconfig)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert waited.returncode == 3, waited.stderr
    assert f"✔ staging: {good[:7]} deployed" in waited.stderr
    last = waited.stderr.splitlines()[-1]
    assert last.startswith(f"◎ main@{good[:7]} deployed to staging · production unreachable (timed out)"), last
    assert "Traceback" not in waited.stderr
