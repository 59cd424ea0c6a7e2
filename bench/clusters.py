"""Benchmark of one push followed on several clusters (issue #13): 1, 3 and 5 simulated clusters.

Each cluster is its own simulated API server holding the same 1,000 Flux objects (bench.monitor's fleet). A child
process runs the real Engine, one ClusterEngine per context, following one push per repository on every cluster,
and reports when each status write reached a push snapshot, its requests (from its start), its CPU time while
the writes land, and its peak RSS. The requests grow with clusters x kinds (a list and a watch per kind and cluster,
and the watches' renewals), not with objects: the last row follows 5 clusters of 190 objects each to show it.
Run: .venv/bin/python -m bench.clusters [--save]   (prints figures, and keeps them in bench/results/clusters.json
with --save; asserts nothing)
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.monitor import KUSTOMIZATIONS_PER_REPO, RELEASES_PER_REPO, REPOS, percentile, populate, push_of
from bench.results import Table, peak_rss_kib, save
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.kubeconfig import write_kubeconfig

WRITES_PER_CLUSTER = 60
WRITE_SPACING_SECONDS = 0.05
SETTLE_SECONDS = 60.0


def run_engine(kubeconfigs: list[tuple[str, str]], pushes: int, results: Any, stop: Any) -> None:
    """Child process: the real Engine over every cluster, one push per repository; reports each Ready it saw."""
    from fluxmon.core.cluster import ClusterTarget
    from fluxmon.core.engine import Engine
    from fluxmon.core.push import PushSnapshot
    from fluxmon.core.verdict import Phase

    engine = Engine(targets=[ClusterTarget(context=context, kubeconfig=path) for context, path in kubeconfigs])
    seen: set[tuple[str, str]] = set()
    reading: set[tuple[str, str]] = set()
    all_reading = threading.Event()

    def on_push(push: PushSnapshot) -> None:
        now = time.time()
        for cluster in push.clusters:
            if cluster.resources:
                reading.add((cluster.context, push.id))
            for followed in cluster.resources:
                key = (cluster.context, followed.ref.name)
                if followed.phase is Phase.READY and followed.role == "kustomization" and key not in seen:
                    seen.add(key)
                    results.put(("ready", f"{cluster.context}/{followed.ref.name}", now))
        if len(reading) == pushes * len(kubeconfigs):
            all_reading.set()

    engine.subscribe(on_push)
    engine.start()
    for repo in range(pushes):
        engine.add(push_of(repo))
    all_reading.wait(SETTLE_SECONDS)  # every cluster has read its objects: measuring starts from a settled engine
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    results.put(("started", "", time.time()))
    stop.wait()
    requests = sum(getattr(c.cluster, "requests", 0) for c in engine.clusters)  # from the start: lists and watches
    kinds = len(engine.kinds)
    engine.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    results.put(("done", f"{requests},{kinds},{cpu},{peak_rss_kib()}", time.time()))


def measure(clusters: int, *, repos: int = REPOS, per_repo: int = KUSTOMIZATIONS_PER_REPO) -> tuple[str, ...]:
    """Start `clusters` simulated API servers, follow one push per repository on all, write statuses, print the
    figures, and return them as a row of the README's table."""
    servers = [SimApiServer() for _ in range(clusters)]
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as temp:
        kubeconfigs = []
        writes: list[tuple[KubeClient, str, str, str]] = []
        for number, server in enumerate(servers):
            server.start()
            stack.callback(server.stop)
            client = KubeClient(server.url)
            targets = populate(client, repos=repos, kustomizations_per_repo=per_repo)
            context = f"cluster-{number}"
            path = write_kubeconfig(Path(temp) / f"{context}.kc", server=server.url, context=context)
            kubeconfigs.append((context, str(path)))
            writes += [(client, context, ks, commit) for _namespace, ks, commit in targets[:WRITES_PER_CLUSTER]]
        spawn = multiprocessing.get_context("spawn")
        results = spawn.Queue()
        stop = spawn.Event()
        child = spawn.Process(target=run_engine, args=(kubeconfigs, repos, results, stop))
        child.start()
        first = results.get(timeout=SETTLE_SECONDS + 30)
        if first[0] != "started":
            raise RuntimeError(f"the engine did not start: {first}")
        written: dict[str, float] = {}
        started = time.time()
        for client, context, ks, commit in writes:
            kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
            written[f"{context}/{ks}"] = time.time()
            client.patch_status(kustomizations, "bench", ks, {"lastAppliedRevision": f"main@sha1:{commit}"})
            time.sleep(WRITE_SPACING_SECONDS)  # a steady stream of status writes, as controllers make them
        latencies: list[float] = []
        deadline = time.time() + 30
        while len(latencies) < len(written) and time.time() < deadline:
            kind, key, at = results.get(timeout=30)
            if kind == "ready" and key in written:
                latencies.append((at - written[key]) * 1000)
        seconds = time.time() - started
        stop.set()
        while (message := results.get(timeout=60))[0] != "done":
            pass
        child.join(30)
    requests, kinds, cpu, rss = message[1].split(",")
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = percentile(latencies, 0.95)
    objects = repos * (1 + per_repo + RELEASES_PER_REPO)
    per_kind = int(requests) / clusters / int(kinds)
    print(
        f"{clusters} cluster{'s' if clusters > 1 else ' '} x {objects:>5} objects | status write -> push snapshot: "
        f"p50 {p50:5.1f} ms, p95 {p95:5.1f} ms | requests {int(requests):3} "
        f"({per_kind:.1f} per cluster and kind) | CPU {float(cpu):5.2f} s for "
        f"{len(written)} writes in {seconds:4.1f} s | peak RSS {int(rss) / 1024:5.1f} MiB",
        flush=True,
    )
    return (
        f"{clusters} × {objects:,}",  # noqa: RUF001 (the multiplication sign, as the README writes it)
        f"p50 {p50:,.1f} ms, p95 {p95:,.1f} ms",
        f"{int(requests)} ({per_kind:.1f} per cluster and kind)",
        f"{float(cpu):.2f} s for {len(written)} writes",
        f"{int(rss) / 1024:.1f} MiB",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clusters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", action="store_true", help="keep the figures in bench/results/ for bench.report")
    args = parser.parse_args(argv)
    print(f"one push per repository ({REPOS}) on every cluster, {WRITES_PER_CLUSTER} status writes per cluster")
    rows = [measure(clusters) for clusters in (1, 3, 5)]
    rows.append(measure(5, per_repo=KUSTOMIZATIONS_PER_REPO // 10))
    if args.save:
        table = Table(
            name="clusters",
            columns=(
                "clusters × objects each",  # noqa: RUF001
                "status write → push snapshot",
                "API requests (from start)",
                "CPU while the writes land",
                "peak RSS",
            ),
            rows=tuple(rows),
            notes=(
                f"One push per repository ({REPOS}) followed on every cluster, {WRITES_PER_CLUSTER} status writes "
                f"per cluster {WRITE_SPACING_SECONDS * 1000:.0f} ms apart.",
            ),
        )
        print(f"saved {save(table)}")


if __name__ == "__main__":
    main()
