"""A whole simulated cluster: API server, Flux CRDs, a `flux bootstrap`-style sync, and the controllers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import ApiStatusError, KubeClient
from fluxmon.sim.controllers import DEMO_TIMINGS, FluxControllers, SimTimings
from fluxmon.sim.crds import flux_crds
from fluxmon.sim.kubeconfig import KubeconfigContext, write_contexts, write_kubeconfig

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
    """`fluxmon sim` in one object: start() serves and bootstraps, stop() tears everything down.

    `kubeconfig`: where to write a kubeconfig with one context, `context`, for this cluster (None: write none, as
    when SimFleet writes one file for all its clusters). `down()` and `up()` take the whole cluster away and bring
    it back on the same port with the same objects, as a cluster behind a VPN that drops and returns.
    """

    def __init__(
        self,
        *,
        repo: Path,
        kubeconfig: Path | None,
        path: str = "clusters/local",
        port: int = 0,
        timings: SimTimings = DEMO_TIMINGS,
        context: str = "fluxmon-sim",
    ) -> None:
        self.repo = repo
        self.kubeconfig = kubeconfig
        self.path = path
        self.context = context
        self.port = port
        self.server = SimApiServer(port=port)
        self.timings = timings
        self.controllers: FluxControllers | None = None

    def start(self) -> None:
        try:
            self.server.start()
        except OSError as error:  # the port is taken: say which cluster and port, for `fluxmon sim` to report
            message = f"cannot serve cluster {self.context} on port {self.port}: {error.strerror}"
            raise OSError(error.errno, message) from error
        try:
            client = KubeClient(self.server.url)
            install_crds(client)
            bootstrap(client, repo=self.repo, path=self.path)
            self.controllers = FluxControllers(client, timings=self.timings)
            self.controllers.start()
            if self.kubeconfig is not None:
                write_kubeconfig(self.kubeconfig, server=self.server.url, context=self.context)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.controllers is not None:
            self.controllers.stop()
            self.controllers = None
        self.server.stop()

    @property
    def entry(self) -> KubeconfigContext:
        """This cluster as one context of a kubeconfig (the server must be started: its port is chosen then)."""
        return KubeconfigContext(name=self.context, server=self.server.url)

    @property
    def serving(self) -> bool:
        return self.server.serving

    def down(self) -> None:
        """The cluster goes away: its controllers stop, then its API server; every object is kept."""
        if self.controllers is not None:
            self.controllers.stop()
        self.server.stop()

    def up(self) -> None:
        """The cluster comes back where it was: the API server on its port, then its controllers, which carry on."""
        self.server.start()
        if self.controllers is not None:
            self.controllers.start()


class SimFleet:
    """Several simulated clusters following one repository, each at its own path: `fluxmon sim --cluster ...`.

    Each cluster is a SimCluster of its own (API server on its own port, its own controllers), and its kubeconfig
    context takes the cluster's name. `kubeconfig`: one file with every context, the first one current.
    `kubeconfig_dir`: besides, or instead, one file per cluster, `<dir>/<name>.kubeconfig`, for
    `KUBECONFIG=<dir>/staging.kubeconfig:<dir>/production.kubeconfig`. `port`: the first cluster's, the next ones
    on the ports after it (0: any free ones).
    """

    def __init__(
        self,
        *,
        repo: Path,
        clusters: Sequence[tuple[str, str]],
        kubeconfig: Path | None = None,
        kubeconfig_dir: Path | None = None,
        port: int = 0,
        timings: SimTimings = DEMO_TIMINGS,
    ) -> None:
        if not clusters:
            raise ValueError("a fleet needs at least one cluster")
        names = [name for name, _ in clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names repeat: {', '.join(names)}")
        self.kubeconfig = kubeconfig
        self.clusters = tuple(
            SimCluster(
                repo=repo,
                kubeconfig=kubeconfig_dir / f"{name}.kubeconfig" if kubeconfig_dir is not None else None,
                path=path,
                port=port + index if port else 0,
                timings=timings,
                context=name,
            )
            for index, (name, path) in enumerate(clusters)
        )

    def start(self) -> None:
        """Start every cluster (stopping those already started if one fails), then write the shared kubeconfig."""
        started: list[SimCluster] = []
        try:
            for cluster in self.clusters:
                cluster.start()
                started.append(cluster)
            if self.kubeconfig is not None:
                write_contexts(self.kubeconfig, [cluster.entry for cluster in self.clusters])
        except BaseException:
            for cluster in reversed(started):
                cluster.stop()
            raise

    def stop(self) -> None:
        for cluster in reversed(self.clusters):
            cluster.stop()

    def cluster(self, name: str) -> SimCluster:
        found = next((cluster for cluster in self.clusters if cluster.context == name), None)
        if found is None:
            raise KeyError(f"no cluster {name!r} (the fleet's: {', '.join(c.context for c in self.clusters)})")
        return found
