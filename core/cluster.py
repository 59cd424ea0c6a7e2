"""The cluster port: what the engine needs from a Kubernetes cluster, and the errors it may meet there.

The engine (the informer, the session manager) is written against `ClusterApi`; core/kube.py implements it with
the official client, and tests may give it a scripted fake (tests/scripted.py). The errors live here, not in the
adapter, so that nothing above the port imports the adapter to catch them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fluxmon.core.errors import FluxmonError
from fluxmon.core.objects import ObjectRef

PLURALS = {
    "GitRepository": "gitrepositories",
    "OCIRepository": "ocirepositories",
    "Bucket": "buckets",
    "HelmRepository": "helmrepositories",
    "HelmChart": "helmcharts",
    "Kustomization": "kustomizations",
    "HelmRelease": "helmreleases",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterTarget:
    """One cluster to follow pushes on: a kubeconfig context, and the kubeconfig it is in.

    `context` None: the kubeconfig's current context. `kubeconfig` None: `--kubeconfig`, else $KUBECONFIG (every
    file in it, merged as kubectl merges them), else ~/.kube/config.
    """

    context: str | None = None
    kubeconfig: str | None = None


class ClusterError(FluxmonError):
    """Something between us and the cluster failed; subclasses say what, and what to do."""

    title = "Cluster error"


class KubeconfigError(ClusterError):
    title = "kubeconfig problem"


class ClusterUnreachable(ClusterError):
    title = "Cluster unreachable"


class Unauthorized(ClusterError):
    title = "Not logged in to the cluster"


class Forbidden(ClusterError):
    title = "Missing permissions"


class FluxNotInstalled(ClusterError):
    title = "Flux is not installed"


class KindMissing(ClusterError):
    """One Flux kind is not served (for example no helm-controller); the others keep working."""

    title = "Flux kind not installed"


class WatchExpired(ClusterError):
    """410 Gone: the watch's resourceVersion is too old; list again."""

    title = "Watch expired"


@dataclass(frozen=True, kw_only=True, slots=True)
class KindApi:
    """Where a Flux kind is served on this cluster (the version is discovered, not assumed)."""

    kind: str
    group: str
    version: str
    plural: str

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}"


@dataclass(frozen=True, kw_only=True, slots=True)
class FluxEvent:
    """A core/v1 Event on a Flux object: the controllers' best error text lives here."""

    type: str
    reason: str
    message: str
    revision: str
    timestamp: str
    count: int


class ClusterApi(Protocol):
    """What the engine needs from a cluster; core.kube.Cluster is the real one, tests/scripted.py a scripted one."""

    context: str
    server: str

    def discover(self, kinds: tuple[str, ...]) -> dict[str, KindApi]: ...
    def list_kind(self, api: KindApi) -> tuple[str, Iterable[dict[str, Any]]]: ...
    def watch(
        self, api: KindApi, resource_version: str, *, stop: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]: ...
    def cut_watches(self) -> None: ...
    def events(self, ref: ObjectRef, *, limit: int = 20) -> list[FluxEvent]: ...
    def request_reconcile(self, api: KindApi, ref: ObjectRef, token: str) -> None: ...
    def close(self) -> None: ...
