"""kubectl, the real one, against both API servers: apply with its default validation, server-side apply, and
`kubectl get` showing Flux's printer columns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fluxmon.sim.cluster import install_crds
from tests.clusters import Cluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed here")

KUSTOMIZATION = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: {interval}
  path: ./apps
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"""


def kubectl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def manifest(tmp_path: Path, interval: str) -> str:
    path = tmp_path / f"apps-{interval}.yaml"
    path.write_text(KUSTOMIZATION.format(interval=interval))
    return str(path)


@pytest.fixture
def flux_cluster(cluster: Cluster) -> Cluster:
    install_crds(cluster.admin)
    cluster.admin.create(cluster.admin.resource("v1", "Namespace"), "", {"metadata": {"name": "flux-system"}})
    return cluster


def test_kubectl_apply_validates_and_applies(flux_cluster: Cluster, tmp_path: Path) -> None:
    created = kubectl(flux_cluster, "apply", "-f", manifest(tmp_path, "10m"))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "kustomization.kustomize.toolkit.fluxcd.io/apps created"
    configured = kubectl(flux_cluster, "apply", "-f", manifest(tmp_path, "5m"))
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.strip() == "kustomization.kustomize.toolkit.fluxcd.io/apps configured"
    assert "warning" not in configured.stderr
    kustomizations = flux_cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    applied = flux_cluster.admin.get(kustomizations, "flux-system", "apps")
    assert (applied["spec"]["interval"], applied["metadata"]["generation"]) == ("5m", 2)
    # The CRD's status default: a Kustomization no controller has reconciled yet.
    assert applied["status"] == {"observedGeneration": -1}


def test_kubectl_server_side_apply_creates_then_updates(flux_cluster: Cluster, tmp_path: Path) -> None:
    first = kubectl(flux_cluster, "apply", "--server-side", "-f", manifest(tmp_path, "10m"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "kustomization.kustomize.toolkit.fluxcd.io/apps serverside-applied"
    second = kubectl(flux_cluster, "apply", "--server-side", "-f", manifest(tmp_path, "1m"))
    assert second.returncode == 0, second.stderr
    kustomizations = flux_cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    assert flux_cluster.admin.get(kustomizations, "flux-system", "apps")["spec"]["interval"] == "1m"


def test_kubectl_get_shows_flux_printer_columns(flux_cluster: Cluster, tmp_path: Path) -> None:
    assert kubectl(flux_cluster, "apply", "-f", manifest(tmp_path, "10m")).returncode == 0
    kustomizations = flux_cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    message = "Applied revision: main@sha1:7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
    flux_cluster.admin.patch_status(
        kustomizations,
        "flux-system",
        "apps",
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ReconciliationSucceeded",
                    "message": message,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )
    shown = kubectl(flux_cluster, "get", "kustomizations", "-n", "flux-system")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == ["NAME", "AGE", "READY", "STATUS"]
    name, _age, ready, *status = row.split()
    assert (name, ready, " ".join(status)) == ("apps", "True", message)
