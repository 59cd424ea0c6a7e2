"""Benchmark of the monitor against the seed's design: Flux objects spread over repositories, one push (session)
followed per repository, while status writes arrive (1,000 objects and 10 sessions unless told otherwise).

The parent serves the simulated API and plays the Flux controllers, writing statuses and noting when. A child
process runs the monitor (the real Engine on the real adapter) and reports when each change reached a session
snapshot, how long its first verdicts took, its CPU time (start-up and storm apart) and its peak RSS; the parent's
API server counts the child's requests. The same is measured for a per-object poller every 2 s (the seed's design).

    .venv/bin/python -m bench.monitor                                  1,000 objects, 10 sessions
    .venv/bin/python -m bench.monitor --objects 10000 --sessions 50    one other size
    .venv/bin/python -m bench.monitor --scale                          1,000/10 up to 10,000/50, and the growth
    add --save to keep the figures as bench/results/monitor.json (monitor-scale.json for --scale)

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import queue
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.results import Table, peak_rss_kib, save
from fluxmon.core.session import SessionSpec
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig

OBJECTS = 1000
SESSIONS = 10
REPOS = SESSIONS  # one push followed per repository
KUSTOMIZATIONS_PER_REPO = 90
RELEASES_PER_REPO = 9  # 10 x (1 source + 90 + 9) = 1,000 objects
RELEASE_SHARE = 0.09  # of each repository's objects; the rest but its GitRepository are Kustomizations
POLL_INTERVAL_SECONDS = 2.0
WRITES = 200
WRITE_SPACING_SECONDS = 0.05
SETTLE_SECONDS = 300.0  # first verdicts at 10,000 objects took minutes before issue #16: wait, and say so if not
COLLECT_SECONDS = 30.0  # after the last write, how long the changes still unseen are waited for
TAIL_SECONDS = 5.0  # the storm's CPU is counted until this long after the last write (later if changes are unseen),
# the same for both followers: the monitor sees the last change at once, the poller up to a round and 2 s later
DEFAULT_SCALE = "1000/10,2000/20,5000/25,10000/50"  # the issue's two sizes, and two between for the chart's line
OLD = "f" * 40  # no repo commit looks like this (sha(repo) is the repo number in hex)
MIB = 1024  # peak RSS is in KiB


def sha(repo: int) -> str:
    return f"{repo:040x}"


def push_of(repo: int) -> SessionSpec:
    """The push the benchmark follows for one repository: its commit is `sha(repo)`."""
    return SessionSpec(
        id=f"s{repo}", remote_url=f"https://git.example/r{repo}", branch="main", commit=sha(repo), timeout_seconds=3600
    )


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """How the objects are spread: per repository one GitRepository, Kustomizations, and HelmReleases (about 9 %),
    like the 1,000 objects of 10 repositories this benchmark always had; one session follows each repository."""

    repos: int
    kustomizations_per_repo: int
    releases_per_repo: int

    @property
    def objects(self) -> int:
        return self.repos * (1 + self.kustomizations_per_repo + self.releases_per_repo)


def fleet(objects: int, sessions: int) -> Fleet:
    """`objects` spread over `sessions` repositories; a remainder is dropped (the first line says the count)."""
    per_repo = objects // sessions
    if per_repo < 2:
        raise ValueError(f"{objects} objects over {sessions} sessions: each repository needs at least 2 objects")
    releases = round(per_repo * RELEASE_SHARE)
    return Fleet(repos=sessions, kustomizations_per_repo=per_repo - 1 - releases, releases_per_repo=releases)


APPLIED_BY = "kustomize-controller"
"""The field manager of Flux's server-side apply, which creates these objects from Git (fluxcd/kustomize-controller
main.go, `controllerName`)."""
APPLIED_AT = "2026-01-01T00:00:00Z"
STATUS_MANAGERS = {
    "GitRepository": "gotk-source-controller",
    "Kustomization": "gotk-kustomize-controller",
    "HelmRelease": "gotk-helm-controller",
}
"""Each controller writes status as "gotk-" + its name (fluxcd/kustomize-controller main.go `StatusManager`, and the
same `fmt.Sprintf("gotk-%s", ...)` in source-controller's and helm-controller's reconcilers)."""
READY = [
    {
        "type": "Ready",
        "status": "True",
        "reason": "ReconciliationSucceeded",
        "message": "ok",
        "observedGeneration": 1,
        "lastTransitionTime": APPLIED_AT,
    }
]


def _fields(value: Any) -> dict[str, Any]:
    """A value's field set as managedFields write it (FieldsV1): `f:name` per key, `{}` at each leaf."""
    if not isinstance(value, dict):
        return {}
    return {f"f:{key}": _fields(item) for key, item in value.items()}


def flux_object(
    kind: str, api_version: str, metadata: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """An object as it stands on a cluster Flux runs: applied from Git by kustomize-controller with Flux's finalizer,
    and carrying the managedFields of that apply and of its controller's status writes, which a monitor must not
    keep (issue #16: RSS)."""
    return {
        "metadata": {
            **metadata,
            "finalizers": ["finalizers.fluxcd.io"],
            "managedFields": [
                {
                    "manager": APPLIED_BY,
                    "operation": "Apply",
                    "apiVersion": api_version,
                    "time": APPLIED_AT,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": _fields({"labels": metadata.get("labels", {})}),
                        "f:spec": _fields(spec),
                    },
                },
                {
                    "manager": STATUS_MANAGERS[kind],
                    "operation": "Update",
                    "subresource": "status",
                    "apiVersion": api_version,
                    "time": APPLIED_AT,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": _fields(status)},
                },
                {
                    "manager": STATUS_MANAGERS[kind],
                    "operation": "Update",
                    "apiVersion": api_version,
                    "time": APPLIED_AT,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:finalizers": {".": {}, 'v:"finalizers.fluxcd.io"': {}}}},
                },
            ],
        },
        "spec": spec,
    }


def chart_values(name: str) -> dict[str, Any]:
    """A chart's values, about 2 kB as JSON: HelmRelease specs are the large ones a cache should not keep whole."""
    return {
        "replicaCount": 2,
        "image": {"repository": f"ghcr.io/example/{name}", "tag": "1.24.3", "pullPolicy": "IfNotPresent"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": f"{name}.example.com", "paths": ["/"]}]},
        "env": [{"name": f"SETTING_{index}", "value": f"value-{index}-{'x' * 24}"} for index in range(24)],
        "podAnnotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
    }


def populate(
    client: KubeClient,
    *,
    repos: int = REPOS,
    kustomizations_per_repo: int = KUSTOMIZATIONS_PER_REPO,
    releases_per_repo: int = RELEASES_PER_REPO,
) -> list[tuple[str, str, str]]:
    """Create the objects, all Ready at an old commit; returns the Kustomizations as (namespace, name, sha), taking
    the repositories in turn (the first of each, then the second of each...), so that writes reach every session."""
    install_crds(client)
    client.create(client.resource("v1", "Namespace"), "", {"metadata": {"name": "bench"}})
    api_versions = {
        "GitRepository": "source.toolkit.fluxcd.io/v1",
        "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
        "HelmRelease": "helm.toolkit.fluxcd.io/v2",
    }
    resources = {kind: client.resource(api_version, kind) for kind, api_version in api_versions.items()}

    def add(kind: str, metadata: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> None:
        client.create(resources[kind], "bench", flux_object(kind, api_versions[kind], metadata, spec, status))
        client.patch_status(resources[kind], "bench", metadata["name"], status)

    by_repo: list[list[tuple[str, str, str]]] = []
    for repo in range(repos):
        name = f"r{repo}"
        add(
            "GitRepository",
            {"name": name},
            {"interval": "1m", "url": f"https://git.example/{name}", "ref": {"branch": "main"}, "timeout": "60s"},
            {"observedGeneration": 1, "conditions": READY, "artifact": {"revision": f"main@sha1:{sha(repo)}"}},
        )
        for index in range(kustomizations_per_repo):
            add(
                "Kustomization",
                {"name": f"{name}-ks{index}"},
                {
                    "interval": "10m",
                    "path": f"./{name}-ks{index}",
                    "prune": True,
                    "timeout": "5m",
                    "sourceRef": {"kind": "GitRepository", "name": name},
                },
                {
                    "observedGeneration": 1,
                    "conditions": READY,
                    "lastAppliedRevision": f"main@sha1:{OLD}",
                    "lastAttemptedRevision": f"main@sha1:{OLD}",
                },
            )
        for index in range(releases_per_repo):
            add(
                "HelmRelease",
                {
                    "name": f"{name}-hr{index}",
                    "labels": {  # applied by the repository's first Kustomization
                        "kustomize.toolkit.fluxcd.io/name": f"{name}-ks0",
                        "kustomize.toolkit.fluxcd.io/namespace": "bench",
                    },
                },
                {
                    "interval": "10m",
                    "chart": {
                        "spec": {"chart": "x", "version": "1.x", "sourceRef": {"kind": "HelmRepository", "name": "h"}}
                    },
                    "values": chart_values(f"{name}-hr{index}"),
                },
                {"observedGeneration": 1, "conditions": READY},
            )
        by_repo.append([("bench", f"{name}-ks{index}", sha(repo)) for index in range(kustomizations_per_repo)])
    return [targets[index] for index in range(kustomizations_per_repo) for targets in by_repo]


# --- the children: what is measured ------------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_monitor(kubeconfig: str, sessions: int, results: Any, stop: Any) -> None:
    """Child process: the real Engine following one push per repo; reports when each object turned Ready."""
    from fluxmon.core.engine import Engine
    from fluxmon.core.session import SessionState
    from fluxmon.core.verdict import Phase

    seen: set[str] = set()
    following: set[str] = set()
    all_following = threading.Event()

    def on_snapshot(push: Any) -> None:
        now = time.time()
        snapshot = push.first
        # A verdict, not "reading the cluster": every kind has been read (the pushed commit is at its source, so
        # the session is reconciling once the Kustomizations are known).
        if snapshot.state is SessionState.RECONCILING and snapshot.id not in following:
            following.add(snapshot.id)
            if len(following) == sessions:
                all_following.set()
        for resource_ in snapshot.resources:
            if resource_.phase is Phase.READY and resource_.role == "kustomization" and resource_.ref.name not in seen:
                seen.add(resource_.ref.name)
                results.put(("ready", resource_.ref.name, now))

    cpu_at_start = cpu_seconds()  # the imports above are Python's start, not the engine's
    started = time.time()
    engine = Engine(kubeconfig=kubeconfig)
    engine.subscribe(on_snapshot)
    engine.start()
    for repo in range(sessions):
        engine.add(push_of(repo))
    settled = all_following.wait(SETTLE_SECONDS)  # every session has read the cluster: the storm starts from here
    first_verdicts = time.time() - started
    cpu_settled = cpu_seconds()
    results.put(("started", "", started))
    results.put(("settled", "", time.time()))
    stop.wait()
    cpu_storm = cpu_seconds() - cpu_settled
    engine.stop()
    figures = {
        "first_verdicts_seconds": first_verdicts if settled else None,
        "startup_cpu_seconds": cpu_settled - cpu_at_start,
        "storm_cpu_seconds": cpu_storm,
        "peak_rss_kib": peak_rss_kib(),
    }
    results.put(("done", figures, time.time()))


def run_poller(kubeconfig: str, layout: Fleet, results: Any, stop: Any) -> None:
    """Child process: the seed's design, each session fetching every object of its repository in turn and then
    waiting 2 s, one thread per session; reports when it saw each Kustomization at its push's commit."""
    client = KubeClient.from_kubeconfig(Path(kubeconfig))
    sources = client.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
    kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    releases = client.resource("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    seen: set[str] = set()
    rounds: list[float] = []
    first_round_done: set[int] = set()
    all_polled = threading.Event()
    lock = threading.Lock()

    def poll(repo: int) -> None:
        followed = (
            [(sources, f"r{repo}")]
            + [(kustomizations, f"r{repo}-ks{i}") for i in range(layout.kustomizations_per_repo)]
            + [(releases, f"r{repo}-hr{i}") for i in range(layout.releases_per_repo)]
        )
        while not stop.is_set():
            began = time.perf_counter()
            for kind, name in followed:
                obj = client.get(kind, "bench", name)
                if kind is kustomizations and obj["status"].get("lastAppliedRevision") == f"main@sha1:{sha(repo)}":
                    with lock:
                        if name not in seen:
                            seen.add(name)
                            results.put(("ready", name, time.time()))
            with lock:
                rounds.append(time.perf_counter() - began)
                first_round_done.add(repo)
                if len(first_round_done) == layout.repos:
                    all_polled.set()
            stop.wait(POLL_INTERVAL_SECONDS)

    cpu_at_start = cpu_seconds()
    started = time.time()
    threads = [threading.Thread(target=poll, args=(repo,), name=f"poller-{repo}") for repo in range(layout.repos)]
    for thread in threads:
        thread.start()
    settled = all_polled.wait(SETTLE_SECONDS)
    first_verdicts = time.time() - started
    cpu_settled = cpu_seconds()
    with lock:
        rounds.clear()  # the rounds of the storm only
    results.put(("started", "", started))
    results.put(("settled", "", time.time()))
    stop.wait()
    cpu_storm = cpu_seconds() - cpu_settled
    for thread in threads:
        thread.join()
    figures = {
        "first_verdicts_seconds": first_verdicts if settled else None,
        "startup_cpu_seconds": cpu_settled - cpu_at_start,
        "storm_cpu_seconds": cpu_storm,
        "peak_rss_kib": peak_rss_kib(),
        "poll_round_seconds": statistics.median(rounds) if rounds else None,
    }
    results.put(("done", figures, time.time()))


# --- the parent: the cluster, the storm, the figures -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One follower's run, in the units it is printed in."""

    follower: str  # "fluxmon" or "seed"
    objects: int
    sessions: int
    writes: int
    changes_seen: int
    p50_ms: float
    p95_ms: float
    first_verdicts_seconds: float | None  # None: not every session had a verdict within SETTLE_SECONDS
    startup_cpu_seconds: float
    storm_seconds: float
    storm_cpu_seconds: float
    cpu_per_write_ms: float
    peak_rss_mib: float
    requests_per_session_minute: float
    poll_round_seconds: float | None = None  # the poller: one session's pass over its objects, median (storm)


LABELS = {"fluxmon": "fluxmon (list+watch)", "seed": "seed (poll every 2 s)"}


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `share` of them at or below it."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(len(sorted_values) * share) - 1)]


def measure(follower: str, layout: Fleet, *, writes: int = WRITES) -> Figures:
    """Serve `layout`, start the follower in its own process, make the status writes, and gather its figures."""
    server = SimApiServer()
    server.start()
    try:
        client = KubeClient(server.url)
        targets = populate(
            client,
            repos=layout.repos,
            kustomizations_per_repo=layout.kustomizations_per_repo,
            releases_per_repo=layout.releases_per_repo,
        )
        kustomizations = client.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        storm = targets[:writes]
        with tempfile.TemporaryDirectory() as temp:
            kubeconfig = str(write_kubeconfig(Path(temp) / "kubeconfig", server=server.url))
            spawn = multiprocessing.get_context("spawn")
            results = spawn.Queue()
            stop = spawn.Event()
            target: Callable[..., None] = run_monitor if follower == "fluxmon" else run_poller
            argument: Any = layout.repos if follower == "fluxmon" else layout
            requests_before = server.requests
            child = spawn.Process(target=target, args=(kubeconfig, argument, results, stop))
            child.start()
            try:
                kind, _, started = results.get(timeout=SETTLE_SECONDS + 60)
                if kind != "started":
                    raise RuntimeError(f"the {follower} did not start: {kind}")
                results.get(timeout=60)  # settled
                written: dict[str, float] = {}
                storm_began = time.time()
                for namespace, ks, commit in storm:
                    written[ks] = time.time()
                    client.patch_status(kustomizations, namespace, ks, {"lastAppliedRevision": f"main@sha1:{commit}"})
                    time.sleep(WRITE_SPACING_SECONDS)  # a steady stream of status writes, as controllers make them
                last_write = time.time()
                latencies: list[float] = []
                deadline = last_write + COLLECT_SECONDS
                while len(latencies) < len(written) and (left := deadline - time.time()) > 0:
                    try:
                        kind, ks, at = results.get(timeout=left)
                    except queue.Empty:  # the rest are counted as not seen: "(198/200 changes)"
                        break
                    if kind == "ready" and ks in written:
                        latencies.append((at - written[ks]) * 1000)
                time.sleep(max(0.0, last_write + TAIL_SECONDS - time.time()))  # the same window for both followers
                stopped = time.time()
                stop.set()
                while (message := results.get(timeout=60))[0] != "done":
                    pass
            finally:
                stop.set()
                child.join(60)
                if child.is_alive():
                    child.kill()
                    child.join(5)
            requests = server.requests - requests_before - len(storm)  # the parent's own writes are not the child's
    finally:
        server.stop()
    measured: dict[str, Any] = message[1]
    latencies.sort()
    storm_cpu = measured["storm_cpu_seconds"]
    return Figures(
        follower=follower,
        objects=layout.objects,
        sessions=layout.repos,
        writes=len(storm),
        changes_seen=len(latencies),
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p95_ms=percentile(latencies, 0.95),
        first_verdicts_seconds=measured["first_verdicts_seconds"],
        startup_cpu_seconds=measured["startup_cpu_seconds"],
        storm_seconds=stopped - storm_began,
        storm_cpu_seconds=storm_cpu,
        cpu_per_write_ms=storm_cpu / len(storm) * 1000 if storm else float("nan"),
        peak_rss_mib=measured["peak_rss_kib"] / MIB,
        requests_per_session_minute=requests / layout.repos / ((stopped - started) / 60),
        poll_round_seconds=measured.get("poll_round_seconds"),
    )


def seconds_text(value: float | None) -> str:
    return f"over {SETTLE_SECONDS:.0f} s" if value is None else f"{value:.2f} s"


def result_line(figures: Figures) -> str:
    """One follower's line: starts with its name and carries `p95 <ms>` and `CPU <s>` (the storm's CPU)."""
    poll = f" | a poll round took {figures.poll_round_seconds:.2f} s" if figures.poll_round_seconds is not None else ""
    return (
        f"{LABELS[figures.follower]:<22} status write -> snapshot: p50 {figures.p50_ms:7.1f} ms, "
        f"p95 {figures.p95_ms:7.1f} ms ({figures.changes_seen}/{figures.writes} changes) | first verdicts "
        f"{seconds_text(figures.first_verdicts_seconds)} | CPU {figures.storm_cpu_seconds:5.2f} s during the "
        f"{figures.storm_seconds:.0f} s storm ({figures.cpu_per_write_ms:.1f} ms per write; start-up "
        f"{figures.startup_cpu_seconds:.2f} s) | requests per session-minute: "
        f"{figures.requests_per_session_minute:8.1f} | peak RSS {figures.peak_rss_mib:5.1f} MiB{poll}"
    )


def heading(layout: Fleet, writes: int) -> str:
    return (
        f"{layout.objects} Flux objects, {layout.repos} sessions, "
        f"{min(writes, layout.repos * layout.kustomizations_per_repo)} status writes "
        f"{WRITE_SPACING_SECONDS * 1000:.0f} ms apart"
    )


def figures_cells(figures: Figures) -> tuple[str, ...]:
    """One row of the README's table."""
    return (
        LABELS[figures.follower],
        f"p50 {figures.p50_ms:,.1f} ms, p95 {figures.p95_ms:,.1f} ms",
        seconds_text(figures.first_verdicts_seconds),
        f"{figures.storm_cpu_seconds:.2f} s ({figures.cpu_per_write_ms:.1f} ms per write)",
        f"{figures.startup_cpu_seconds:.2f} s",
        f"{figures.requests_per_session_minute:,.1f}",
        f"{figures.peak_rss_mib:.0f} MiB",
    )


COLUMNS = (
    "",
    "status write → session snapshot",
    "first verdicts after start",
    "CPU during the storm",
    "CPU to start",
    "API requests per session-minute",
    "peak RSS",
)


def poller_note(figures: Figures) -> str:
    """The poller's round against its period: past 2 s, it no longer polls every 2 s, and says so."""
    if figures.poll_round_seconds is None:
        return ""
    return (
        f"At {figures.objects:,} objects the poller's pass over one session's objects took "
        f"{figures.poll_round_seconds:.2f} s (median), then it waits {POLL_INTERVAL_SECONDS:.0f} s."
    )


def single_table(layout: Fleet, runs: Sequence[Figures]) -> Table:
    return Table(
        name="monitor",
        columns=COLUMNS,
        rows=tuple(figures_cells(figures) for figures in runs),
        notes=(
            f"{layout.objects:,} Flux objects, {layout.repos} sessions, {runs[0].writes} status writes "
            f"{WRITE_SPACING_SECONDS * 1000:.0f} ms apart.",
            *(note for figures in runs if (note := poller_note(figures))),
        ),
        data={"runs": [asdict(figures) for figures in runs]},
    )


def size_problem(objects: int, sessions: int) -> str:
    """What is wrong with a size, or "" (each session follows a repository of at least 2 objects)."""
    if sessions < 1 or objects < 2 * sessions:
        return f"{objects} objects over {sessions} sessions: give at least 1 session and 2 objects per session"
    return ""


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """ "1000/10,10000/50" -> [(1000, 10), (10000, 50)]; a size without sessions keeps the default 10."""
    sizes = []
    for item in text.split(","):
        objects, _, sessions = item.strip().partition("/")
        try:
            size = (int(objects), int(sessions) if sessions else SESSIONS)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not OBJECTS or OBJECTS/SESSIONS (e.g. 10000/50)") from None
        if problem := size_problem(*size):
            raise argparse.ArgumentTypeError(problem)
        sizes.append(size)
    return sizes


def growth(first: float, last: float) -> str:
    return f"{last / first:.1f} times" if first > 0 else "n/a"


def growth_text(small: Figures, large: Figures) -> str:
    """How one follower's figures grew from the smallest size to the largest: flat CPU per write is the goal."""
    return (
        f"growth from {small.objects:,} to {large.objects:,} objects: CPU per write "
        f"{small.cpu_per_write_ms:,.1f} → {large.cpu_per_write_ms:,.1f} ms "
        f"({growth(small.cpu_per_write_ms, large.cpu_per_write_ms)}), p95 {small.p95_ms:,.1f} → "
        f"{large.p95_ms:,.1f} ms ({growth(small.p95_ms, large.p95_ms)}), peak RSS {small.peak_rss_mib:,.0f} → "
        f"{large.peak_rss_mib:,.0f} MiB"
    )


def scale_table(writes: int, sizes: Sequence[tuple[Figures, Figures]]) -> Table:
    rows = []
    for monitor, seed in sizes:
        rows.append(
            (
                f"{monitor.objects:,} objects, {monitor.sessions} sessions",
                f"{monitor.p95_ms:,.1f} ms / {seed.p95_ms:,.0f} ms",
                f"{monitor.cpu_per_write_ms:.1f} ms / {seed.cpu_per_write_ms:.1f} ms",
                seconds_text(monitor.first_verdicts_seconds),
                f"{monitor.peak_rss_mib:.0f} MiB / {seed.peak_rss_mib:.0f} MiB",
                f"{monitor.requests_per_session_minute:,.1f} / {seed.requests_per_session_minute:,.0f}",
            )
        )
    notes = [f"{writes} status writes {WRITE_SPACING_SECONDS * 1000:.0f} ms apart at every size."]
    if len(sizes) > 1:
        notes += [
            f"{LABELS[follower]}: {growth_text(small, large)}"
            for follower, small, large in (
                ("fluxmon", sizes[0][0], sizes[-1][0]),
                ("seed", sizes[0][1], sizes[-1][1]),
            )
        ]
    notes += [note for _, seed in sizes[-1:] if (note := poller_note(seed))]
    return Table(
        name="monitor-scale",
        columns=(
            "size",
            "p95 write → snapshot (fluxmon / seed)",
            "CPU per write (fluxmon / seed)",
            "fluxmon first verdicts",
            "peak RSS (fluxmon / seed)",
            "requests per session-minute (fluxmon / seed)",
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        data={"sizes": [{"fluxmon": asdict(monitor), "seed": asdict(seed)} for monitor, seed in sizes]},
    )


def run_size(objects: int, sessions: int, *, writes: int, seed: bool) -> tuple[Fleet, list[Figures]]:
    layout = fleet(objects, sessions)
    print(heading(layout, writes), flush=True)
    runs = []
    for follower in ("fluxmon", "seed") if seed else ("fluxmon",):
        runs.append(measure(follower, layout, writes=writes))
        print(result_line(runs[-1]), flush=True)
    return layout, runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=OBJECTS, help="Flux objects in the cluster (default 1000)")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="pushes followed, one per repository (10)")
    parser.add_argument("--writes", type=int, default=WRITES, help=f"status writes in the storm ({WRITES})")
    parser.add_argument(
        "--scale",
        nargs="?",
        const=DEFAULT_SCALE,
        type=parse_sizes,
        metavar="OBJECTS/SESSIONS,...",
        help=f"run several sizes and print the growth from the first to the last (default {DEFAULT_SCALE})",
    )
    parser.add_argument("--no-seed", action="store_true", help="measure fluxmon only (quicker; not with --save)")
    parser.add_argument("--save", action="store_true", help="keep the figures in bench/results/ for bench.report")
    args = parser.parse_args(argv)
    if args.save and args.no_seed:
        parser.error("--save keeps fluxmon beside the poller: drop --no-seed")
    if problem := size_problem(args.objects, args.sessions):
        parser.error(problem)
    if args.writes < 1:
        parser.error("--writes: give at least 1")
    if args.scale is None:
        layout, runs = run_size(args.objects, args.sessions, writes=args.writes, seed=not args.no_seed)
        if args.save:
            print(f"saved {save(single_table(layout, runs))}")
        return
    sizes = []
    for objects, sessions in args.scale:
        _, runs = run_size(objects, sessions, writes=args.writes, seed=not args.no_seed)
        sizes.append(runs)
    for index, follower in enumerate(("fluxmon", "seed")[: len(sizes[0])]):
        if len(sizes) > 1:
            print(f"{LABELS[follower]:<22} {growth_text(sizes[0][index], sizes[-1][index])}")
    if args.save:
        print(f"saved {save(scale_table(args.writes, [(monitor, seed) for monitor, seed in sizes]))}")


if __name__ == "__main__":
    main()
