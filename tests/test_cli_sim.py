"""`fluxmon sim` and `fluxmon sim init-repo` as a user runs them: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.kubeconfig import write_kubeconfig
from tests.gitrepos import isolated_env


def test_sim_serves_bootstraps_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    init = subprocess.run(
        [sys.executable, "-m", "fluxmon", "sim", "init-repo", str(tmp_path / "fleet")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "fleet.git" / "HEAD").exists()
    kubeconfig = tmp_path / "kubeconfig"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fluxmon",
            "sim",
            "--repo",
            str(tmp_path / "fleet.git"),
            "--kubeconfig",
            str(kubeconfig),
            "--fast",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline()  # blocks until the one line that says it is ready
        assert ready.startswith("fluxmon sim: cluster ready at http://127.0.0.1:"), ready
        client = KubeClient.from_kubeconfig(kubeconfig)
        kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline and names != {"flux-system", "infrastructure", "apps"}:
            names = {i["metadata"]["name"] for i in client.list(kustomizations, "flux-system")["items"]}
        assert names == {"flux-system", "infrastructure", "apps"}
    finally:
        sim.send_signal(signal.SIGTERM)
        _, stderr = sim.communicate(timeout=30)
    assert sim.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_sim_without_a_repo_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "sim", "--repo", str(tmp_path), "--kubeconfig", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"fluxmon: Cannot read input: --repo {tmp_path}: not a bare git repository\n"


def test_init_repo_refuses_a_folder_with_content(tmp_path: Path) -> None:
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "mine.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "sim", "init-repo", str(tmp_path / "fleet")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "exists and is not empty" in result.stderr
    assert (tmp_path / "fleet" / "mine.txt").read_text() == "keep me"


def test_attach_runs_only_the_controllers_against_an_existing_server(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "fluxmon", "sim", "init-repo", str(tmp_path / "fleet")],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    server = SimApiServer()
    server.start()
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=server.url)
        controllers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluxmon",
                "sim",
                "--attach",
                str(kubeconfig),
                "--repo",
                str(tmp_path / "fleet.git"),
                "--fast",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert controllers.stdout is not None
            assert controllers.stdout.readline().startswith("fluxmon sim: Flux controllers running against")
            client = KubeClient(server.url)
            releases = client.resource("helm.toolkit.fluxcd.io/v2", "HelmRelease")
            deadline = time.monotonic() + 30
            ready: list[str] = []
            while time.monotonic() < deadline and len(ready) < 2:
                ready = [
                    i["metadata"]["name"]
                    for i in client.list(releases)["items"]
                    if any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in i.get("status", {}).get("conditions", [])
                    )
                ]
            assert sorted(ready) == ["podinfo", "redis"]
        finally:
            controllers.send_signal(signal.SIGTERM)
            _, stderr = controllers.communicate(timeout=30)
        assert controllers.returncode == 0, stderr
    finally:
        server.stop()
