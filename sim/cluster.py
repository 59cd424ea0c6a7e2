"""A whole simulated cluster: API server, Flux CRDs, a `flux bootstrap`-style sync, and the controllers."""

from __future__ import annotations

import time
from pathlib import Path

from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import ApiStatusError, KubeClient
from fluxmon.sim.controllers import DEMO_TIMINGS, FluxControllers, SimTimings
from fluxmon.sim.crds import flux_crds
from fluxmon.sim.kubeconfig import write_kubeconfig

FLUX_NAMESPACE = "flux-system"
CRD_READY_TIMEOUT_SECONDS = 30.0


def install_crds(client: KubeClient, *, only: tuple[str, ...] | None = None) -> None:
    """Create the Flux CRDs (existing ones are left as they are) and wait until the API serves them."""
    crds = client.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    bodies = flux_crds(only=only)
    for body in bodies:
        try:
            client.create(crds, "", body)
        except ApiStatusError as error:
            if error.code != 409:
                raise
    # A real API server establishes CRDs asynchronously: wait until discovery lists every kind.
    deadline = time.monotonic() + CRD_READY_TIMEOUT_SECONDS
    for body in bodies:
        spec = body["spec"]
        api_version = f"{spec['group']}/{spec['versions'][0]['name']}"
        while True:
            try:
                client.resource(api_version, spec["names"]["kind"])
                break
            except ApiStatusError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # polling discovery is how kubectl waits for a CRD, too


def bootstrap(client: KubeClient, *, repo: Path, path: str, branch: str = "main") -> None:
    """What `flux bootstrap` leaves: the flux-system GitRepository on the repo, and a Kustomization at `path`."""
    namespaces = client.resource("v1", "Namespace")
    objects = [
        (namespaces, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}}),
        (
            client.resource("source.toolkit.fluxcd.io/v1", "GitRepository"),
            FLUX_NAMESPACE,
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": FLUX_NAMESPACE, "namespace": FLUX_NAMESPACE},
                "spec": {"interval": "1m0s", "url": f"file://{repo.resolve()}", "ref": {"branch": branch}},
            },
        ),
        (
            client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            FLUX_NAMESPACE,
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": FLUX_NAMESPACE, "namespace": FLUX_NAMESPACE},
                "spec": {
                    "interval": "10m0s",
                    "path": f"./{path.strip('./')}",
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": FLUX_NAMESPACE},
                },
            },
        ),
    ]
    for resource, namespace, body in objects:
        try:
            client.create(resource, namespace, body)
        except ApiStatusError as error:
            if error.code != 409:
                raise


class SimCluster:
    """`fluxmon sim` in one object: start() serves and bootstraps, stop() tears everything down."""

    def __init__(
        self,
        *,
        repo: Path,
        kubeconfig: Path,
        path: str = "clusters/local",
        port: int = 0,
        timings: SimTimings = DEMO_TIMINGS,
    ) -> None:
        self.repo = repo
        self.kubeconfig = kubeconfig
        self.path = path
        self.server = SimApiServer(port=port)
        self.timings = timings
        self.controllers: FluxControllers | None = None

    def start(self) -> None:
        self.server.start()
        try:
            client = KubeClient(self.server.url)
            install_crds(client)
            bootstrap(client, repo=self.repo, path=self.path)
            self.controllers = FluxControllers(client, timings=self.timings)
            self.controllers.start()
            write_kubeconfig(self.kubeconfig, server=self.server.url)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.controllers is not None:
            self.controllers.stop()
            self.controllers = None
        self.server.stop()
