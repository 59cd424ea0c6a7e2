"""Simulated Flux controllers (source, kustomize, helm): clients of an API server, as the real ones are.

They watch Flux objects through informers and write status through the /status subresource, with the condition
types, reasons and message templates of the real controllers, so that what the monitor reads is shaped exactly as
in production. They run unchanged against the simulated API server or a real kube-apiserver. Each controller is a
module of its own (source_controller, kustomize_controller, helm_controller), citing the Flux source it follows;
this module runs them.

One worker thread runs level-triggered passes: after any change it looks at every object and advances those
that need it. Each step takes the configured time (SimTimings), tracked per object, so one thread can pace many
objects at demo speed or at test speed.
"""

from __future__ import annotations

import threading
import time

from fluxmon.sim.client import KubeClient
from fluxmon.sim.helm_controller import HelmController
from fluxmon.sim.informer import Informer
from fluxmon.sim.kustomize_controller import KustomizeController, build_manifests
from fluxmon.sim.reconciler import SIMULATE_ANNOTATION, Reconciler, SimTimings, parse_go_duration
from fluxmon.sim.source_controller import SourceController

__all__ = [
    "DEMO_TIMINGS",
    "SIMULATE_ANNOTATION",
    "TEST_TIMINGS",
    "FluxControllers",
    "SimTimings",
    "build_manifests",
    "parse_go_duration",
]

PASS_CEILING_SECONDS = 0.5
"""The worker wakes at least this often, so that timed steps finish on time even when nothing changes."""

DEMO_TIMINGS = SimTimings()
TEST_TIMINGS = SimTimings(
    fetch_seconds=0.01,
    build_seconds=0.01,
    health_seconds=0.01,
    health_timeout_seconds=0.3,
    install_seconds=0.01,
    retry_seconds=0.5,
    max_interval_seconds=3600,
)


class FluxControllers:
    """source-, kustomize- and helm-controller on one worker thread: `start()`, `stop()`, nothing in __init__."""

    def __init__(self, client: KubeClient, *, timings: SimTimings = DEMO_TIMINGS) -> None:
        self.client = client
        self.timings = timings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._informers: dict[str, Informer] = {}
        self._controllers: list[Reconciler] = []

    def start(self) -> None:
        self._stop.clear()
        self._informers = {}
        self._controllers = [
            controller(self.client, timings=self.timings, informers=self._informers)
            for controller in (SourceController, KustomizeController, HelmController)
        ]
        for controller in self._controllers:
            for api_version, kind in controller.kinds:
                resource = self.client.resource(api_version, kind)
                self._informers[kind] = Informer(self.client, resource, on_change=self._wake.set)
        for informer in self._informers.values():
            informer.start(self._stop)
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sim-flux-controllers", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self.client.close_watches()
        for informer in self._informers.values():
            informer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(informer.synced.wait(max(0.0, deadline - time.monotonic())) for informer in self._informers.values())

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            due = min(
                (at for controller in self._controllers if (at := controller.next_due(now)) is not None),
                default=now + PASS_CEILING_SECONDS,
            )
            self._wake.wait(timeout=min(max(due - now, 0.005), PASS_CEILING_SECONDS))
            self._wake.clear()
            if stop.is_set():
                return
            for controller in self._controllers:
                controller.reconcile_all()
