"""Benchmark of the monitor against the seed's design: 1,000 Flux objects, 10 sessions at once.

The parent serves the simulated API and plays the Flux controllers, writing statuses and noting when. A child
process runs the monitor (the real Engine on the real adapter) and reports when each change reached a
session snapshot, plus its own CPU time and peak RSS. The same is measured for a per-object poller every 2 s
(the seed's design). Run: .venv/bin/python -m bench.monitor   (prints figures; asserts nothing)
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fluxmon.core.session import SessionSpec
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig

REPOS = 10
KUSTOMIZATIONS_PER_REPO = 90
RELEASES_PER_REPO = 9  # 10 x (1 source + 90 + 9) = 1,000 objects
POLL_INTERVAL_SECONDS = 2.0
WRITES = 200
WRITE_SPACING_SECONDS = 0.05
OLD = "f" * 40  # no repo commit looks like this (sha(repo) is the repo number in hex)


def sha(repo: int) -> str:
    return f"{repo:040x}"


def push_of(repo: int) -> SessionSpec:
    """The push the benchmark follows for one repository: its commit is `sha(repo)`."""
    return SessionSpec(
        id=f"s{repo}", remote_url=f"https://git.example/r{repo}", branch="main", commit=sha(repo), timeout_seconds=3600
    )


def populate(
    client: KubeClient, *, repos: int = REPOS, kustomizations_per_repo: int = KUSTOMIZATIONS_PER_REPO
) -> list[tuple[str, str, str]]:
    """Create the objects, all Ready at an old commit; returns the Kustomizations as (namespace, name, sha)."""
    install_crds(client)
    client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": "bench"}})
    sources = client.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    releases = client.resource("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    ready = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ReconciliationSucceeded",
            "message": "ok",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    targets = []
    for repo in range(repos):
        name = f"r{repo}"
        client.create(
            sources,
            "bench",
            {"metadata": {"name": name}, "spec": {"url": f"https://git.example/{name}", "ref": {"branch": "main"}}},
        )
        client.patch_status(
            sources,
            "bench",
            name,
            {"observedGeneration": 1, "conditions": ready, "artifact": {"revision": f"main@sha1:{sha(repo)}"}},
        )
        for index in range(kustomizations_per_repo):
            ks = f"{name}-ks{index}"
            client.create(
                kustomizations,
                "bench",
                {
                    "metadata": {"name": ks},
                    "spec": {"path": f"./{ks}", "sourceRef": {"kind": "GitRepository", "name": name}},
                },
            )
            client.patch_status(
                kustomizations,
                "bench",
                ks,
                {"observedGeneration": 1, "conditions": ready, "lastAppliedRevision": f"main@sha1:{OLD}"},
            )
            targets.append(("bench", ks, sha(repo)))
        for index in range(RELEASES_PER_REPO):
            client.create(
                releases,
                "bench",
                {
                    "metadata": {
                        "name": f"{name}-hr{index}",
                        "labels": {
                            "kustomize.toolkit.fluxcd.io/name": f"{name}-ks0",
                            "kustomize.toolkit.fluxcd.io/namespace": "bench",
                        },
                    },
                    "spec": {"chart": {"spec": {"chart": "x", "sourceRef": {"kind": "HelmRepository", "name": "h"}}}},
                },
            )
            client.patch_status(releases, "bench", f"{name}-hr{index}", {"observedGeneration": 1, "conditions": ready})
    return targets


def run_monitor(kubeconfig: str, results: Any, stop: Any) -> None:
    """Child process: the real Engine following one push per repo; reports when each object turned Ready."""
    from fluxmon.core.engine import Engine
    from fluxmon.core.verdict import Phase

    engine = Engine(kubeconfig=kubeconfig)
    seen: set[str] = set()
    following: set[str] = set()
    all_following = threading.Event()

    def on_snapshot(push: Any) -> None:
        now = time.time()
        snapshot = push.first
        if snapshot.resources:
            following.add(snapshot.id)
            if len(following) == REPOS:
                all_following.set()
        for resource_ in snapshot.resources:
            if resource_.phase is Phase.READY and resource_.role == "kustomization" and resource_.ref.name not in seen:
                seen.add(resource_.ref.name)
                results.put(("ready", resource_.ref.name, now))

    engine.subscribe(on_snapshot)
    engine.start()
    for repo in range(REPOS):
        engine.add(push_of(repo))
    all_following.wait(60)  # every session has read the cluster: measuring starts from a settled monitor
    results.put(("started", "", time.time()))
    stop.wait()
    requests = sum(getattr(cluster.cluster, "requests", 0) for cluster in engine.clusters)
    engine.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(("done", f"{requests},{usage.ru_utime + usage.ru_stime},{usage.ru_maxrss}", time.time()))


def run_poller(kubeconfig: str, results: Any, stop: Any) -> None:
    """Child process: the seed's design, every followed object fetched every 2 s, one poller per session."""
    client = KubeClient.from_kubeconfig(Path(kubeconfig))
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    requests = 0
    seen: set[str] = set()
    lock = threading.Lock()

    def poll(repo: int) -> None:
        nonlocal requests
        names = [f"r{repo}-ks{i}" for i in range(KUSTOMIZATIONS_PER_REPO)] + [f"r{repo}-hr{i}" for i in range(9)]
        while not stop.is_set():
            for name in names:
                if name.startswith(f"r{repo}-ks"):
                    obj = client.get(kustomizations, "bench", name)
                    if obj["status"].get("lastAppliedRevision") == f"main@sha1:{sha(repo)}" and name not in seen:
                        seen.add(name)
                        results.put(("ready", name, time.time()))
                with lock:
                    requests += 1
            stop.wait(POLL_INTERVAL_SECONDS)

    threads = [threading.Thread(target=poll, args=(repo,), name=f"poller-{repo}") for repo in range(REPOS)]
    for thread in threads:
        thread.start()
    results.put(("started", "", time.time()))
    stop.wait()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(("done", f"{requests},{usage.ru_utime + usage.ru_stime},{usage.ru_maxrss}", time.time()))


def measure(name: str, target: Any) -> None:
    server = SimApiServer()
    server.start()
    try:
        client = KubeClient(server.url)
        targets = populate(client)
        kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        with tempfile.TemporaryDirectory() as temp:
            kubeconfig = str(write_kubeconfig(Path(temp) / "kubeconfig", server=server.url))
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            stop = context.Event()
            child = context.Process(target=target, args=(kubeconfig, results, stop))
            child.start()
            first = results.get(timeout=90)
            if first[0] != "started":
                raise RuntimeError(f"the follower did not start: {first}")
            written: dict[str, float] = {}
            started = time.time()
            for namespace, ks, commit in targets[:WRITES]:
                written[ks] = time.time()
                client.patch_status(kustomizations, namespace, ks, {"lastAppliedRevision": f"main@sha1:{commit}"})
                time.sleep(WRITE_SPACING_SECONDS)  # a steady stream of status writes, as controllers make them
            latencies: list[float] = []
            deadline = time.time() + 30
            while len(latencies) < len(written) and time.time() < deadline:
                kind, ks, at = results.get(timeout=30)
                if kind == "ready" and ks in written:
                    latencies.append((at - written[ks]) * 1000)
            minutes = (time.time() - started) / 60
            stop.set()
            while True:
                kind, payload, _ = results.get(timeout=60)
                if kind == "done":
                    break
            child.join(30)
    finally:
        server.stop()
    requests, cpu, rss = payload.split(",")
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")
    print(
        f"{name:<26} latency status write -> snapshot: p50 {statistics.median(latencies):7.1f} ms, "
        f"p95 {p95:7.1f} ms ({len(latencies)} changes) | requests per session-minute: "
        f"{int(requests) / REPOS / minutes:8.1f} | CPU {float(cpu):5.1f} s | peak RSS {int(rss) / 1024:5.1f} MiB"
    )


def main() -> None:
    print(
        f"{REPOS * (1 + KUSTOMIZATIONS_PER_REPO + RELEASES_PER_REPO)} Flux objects, {REPOS} sessions, "
        f"{WRITES} status writes {WRITE_SPACING_SECONDS * 1000:.0f} ms apart"
    )
    measure("fluxmon (list+watch)", run_monitor)
    measure("seed (poll every 2 s)", run_poller)


if __name__ == "__main__":
    main()
