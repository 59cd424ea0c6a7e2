"""One push on a simulated cluster and on the real kube-apiserver at once (issue #13): `fluxmon wait` over both.

The simulated `staging` follows `clusters/staging` of the sample fleet; a real kube-apiserver, with the simulated
Flux controllers writing to it as the real ones would, follows `clusters/production` of the same bare repository
(the harness's simulated production is taken down).
Each is a context of its own kubeconfig file, merged with `KUBECONFIG=a:b`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import bootstrap, install_crds
from fluxmon.sim.controllers import TEST_TIMINGS, FluxControllers
from fluxmon.sim.kubeconfig import KubeconfigContext, write_contexts
from harness.kubeapiserver import binaries, real_apiserver
from harness.simfleet import SCALE_WEB, FleetUnderTest, break_settings, sim_fleet

WAIT_TIMEOUT = "60s"


@pytest.fixture
def staging_and_real_production(tmp_path: Path) -> Iterator[tuple[FleetUnderTest, Path]]:
    """The fleet with a simulated staging, and the real kube-apiserver as `production`; and the real one's
    kubeconfig (context `production`)."""
    if binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("kube-apiserver is not built; .ci/run must run scripts/kube-apiserver first")
        pytest.skip("kube-apiserver is not built here: run scripts/kube-apiserver to enable the real-API tier")
    with real_apiserver(tmp_path / "kube") as real, sim_fleet(tmp_path / "fleet") as fleet:
        fleet.down("production")  # the real kube-apiserver is production here
        admin = KubeClient(real.url, token=real.admin_token, ca_data=real.ca_data)
        install_crds(admin)
        bootstrap(admin, repo=fleet.repos.remote, path="clusters/production")
        controllers = FluxControllers(admin, timings=TEST_TIMINGS)
        controllers.start()
        ca = tmp_path / "ca.crt"
        ca.write_bytes(real.ca_data)
        kubeconfig = write_contexts(
            tmp_path / "production.kubeconfig",
            [KubeconfigContext(name="production", server=real.url, token=real.admin_token, ca_file=ca)],
        )
        try:
            yield fleet, kubeconfig
        finally:
            controllers.stop()


def test_wait_follows_one_push_on_the_simulator_and_the_real_kube_apiserver(
    staging_and_real_production: tuple[FleetUnderTest, Path],
) -> None:
    fleet, production = staging_and_real_production
    env = {**fleet.env, "KUBECONFIG": f"{fleet.kubeconfig_of('staging')}:{production}"}

    def wait() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fluxmon", "wait", "--context", "staging", "--context", "production",
             "--reconcile", "--timeout", WAIT_TIMEOUT],
            cwd=fleet.work, env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip

    good = fleet.commit_and_push(SCALE_WEB, "Scale web")
    deployed = wait()
    assert deployed.returncode == 0, deployed.stderr
    assert f"main@{good[:7]} deployed to staging, production" in deployed.stderr

    broken = fleet.commit_and_push(break_settings("production"), "production: more settings")
    failed = wait()
    assert failed.returncode == 1, failed.stderr
    assert "✗ production: Kustomization flux-system/apps failed: BuildFailed" in failed.stderr
    assert f"main@{broken[:7]} " in failed.stderr.splitlines()[-1]
    assert "failed on production" in failed.stderr.splitlines()[-1]
