"""Clusters for tests: the simulated API server and a real kube-apiserver behind one interface, plus a watcher.

Tests that take the `cluster` fixture run once against each. The real one needs `scripts/kube-apiserver` to have
been run on this machine: CI does that first, and there a missing build is an error, never a silent skip.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.objects import parse_flux_object
from fluxmon.core.verdict import Phase, verdict
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.informer import Informer
from fluxmon.sim.kubeconfig import write_kubeconfig
from harness.kubeapiserver import binaries, real_apiserver

BACKENDS = ["sim", "kube-apiserver"]
WAIT_SECONDS = 30.0


@dataclass
class Cluster:
    """One API server under test: an admin client, a kubeconfig, and fault injection where it is the simulator."""

    backend: str
    url: str
    admin: KubeClient
    kubeconfig: Path
    ca_data: bytes = b""
    admin_token: str = ""
    limited_token: str = ""
    sim: SimApiServer | None = None

    def client(self, token: str) -> KubeClient:
        return KubeClient(self.url, token=token, ca_data=self.ca_data)


@pytest.fixture(params=BACKENDS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if request.param == "sim":
        server = SimApiServer()
        server.start()
        try:
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=server.url)
            yield Cluster(
                backend="sim", url=server.url, admin=KubeClient(server.url), kubeconfig=kubeconfig, sim=server
            )
        finally:
            server.stop()
        return
    if binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("kube-apiserver is not built; .ci/run must run scripts/kube-apiserver first")
        pytest.skip("kube-apiserver is not built here: run scripts/kube-apiserver to enable the real-API tier")
    with real_apiserver(tmp_path / "kube") as real:
        ca = tmp_path / "ca.crt"
        ca.write_bytes(real.ca_data)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=real.url, token=real.admin_token, ca_file=ca)
        yield Cluster(
            backend="kube-apiserver",
            url=real.url,
            admin=KubeClient(real.url, token=real.admin_token, ca_data=real.ca_data),
            kubeconfig=kubeconfig,
            ca_data=real.ca_data,
            admin_token=real.admin_token,
            limited_token=real.limited_token,
        )


@dataclass
class FluxWatcher:
    """Follows Flux objects through real list+watch and records every state they pass through, in order."""

    client: KubeClient
    kinds: tuple[tuple[str, str], ...] = (
        ("source.toolkit.fluxcd.io/v1", "GitRepository"),
        ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
        ("source.toolkit.fluxcd.io/v1", "HelmChart"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    )
    history: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _informers: list[Informer] = field(default_factory=list)

    def start(self) -> None:
        for api_version, kind in self.kinds:
            informer = Informer(self.client, self.client.resource(api_version, kind), on_change=self._record(kind))
            self._informers.append(informer)
            informer.start(self._stop)

    def stop(self) -> None:
        self._stop.set()
        self.client.close_watches()
        for informer in self._informers:
            informer.join(5)

    def _record(self, kind: str) -> Callable[[], None]:
        def changed() -> None:
            with self._changed:
                informer = next(i for i in self._informers if i.resource.kind == kind)
                for obj in informer.snapshot():
                    self.history.append((f"{kind}/{obj['metadata']['name']}", obj))
                self._changed.notify_all()

        return changed

    def objects(self) -> dict[str, dict[str, Any]]:
        return {
            f"{informer.resource.kind}/{obj['metadata']['name']}": obj
            for informer in self._informers
            for obj in informer.snapshot()
        }

    def wait_for(self, predicate: Callable[[dict[str, dict[str, Any]]], bool], *, what: str) -> dict[str, Any]:
        """Wait (on watch events, with a timeout) until `predicate(objects by Kind/name)` holds."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            while True:
                objects = self.objects()
                if predicate(objects):
                    return objects
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    states = {name: _summary(obj) for name, obj in objects.items()}
                    raise AssertionError(f"timed out waiting for {what}; objects: {states}")
                self._changed.wait(remaining)

    def phase(self, name: str, target: str | None = None) -> Phase:
        obj = self.objects().get(name)
        return verdict(parse_flux_object(obj), target).phase if obj else Phase.UNKNOWN

    def phases_seen(self, name: str, target: str) -> list[Phase]:
        """Every phase `name` passed through relative to `target`, consecutive repeats folded."""
        phases: list[Phase] = []
        for key, obj in self.history:
            if key == name:
                phase = verdict(parse_flux_object(obj), target).phase
                if not phases or phases[-1] != phase:
                    phases.append(phase)
        return phases


def _summary(obj: dict[str, Any]) -> str:
    ready: dict[str, Any] = next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {}
    )
    return f"{ready.get('status')}/{ready.get('reason')}: {ready.get('message', '')[:120]}"
