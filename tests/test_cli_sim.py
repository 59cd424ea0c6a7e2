"""`fluxmon sim` and `fluxmon sim init-repo` as a user runs them: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from fluxmon.core.verdict import Phase
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.kubeconfig import write_kubeconfig
from harness.gitrepos import isolated_env
from tests.clusters import FluxWatcher


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
        watcher = FluxWatcher(client=KubeClient.from_kubeconfig(kubeconfig))
        watcher.start()
        try:
            objects = watcher.wait_for(
                lambda objs: {"Kustomization/infrastructure", "Kustomization/apps"} <= set(objs),
                what="the bootstrap to apply infrastructure and apps",
            )
        finally:
            watcher.stop()
        assert {name for name in objects if name.startswith("Kustomization/")} == {
            "Kustomization/flux-system",
            "Kustomization/infrastructure",
            "Kustomization/apps",
        }
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
            watcher = FluxWatcher(client=KubeClient(server.url))
            watcher.start()
            try:
                watcher.wait_for(
                    lambda objs: all(
                        watcher.phase(f"HelmRelease/{name}") is Phase.READY for name in ("podinfo", "redis")
                    ),
                    what="both HelmReleases Ready",
                )
            finally:
                watcher.stop()
        finally:
            controllers.send_signal(signal.SIGTERM)
            _, stderr = controllers.communicate(timeout=30)
        assert controllers.returncode == 0, stderr
    finally:
        server.stop()
