"""Benchmark of push capture: what the hooks add to `git push` and `git commit`, and how fast the reader reacts.

Run: .venv/bin/python -m bench.hooks   (prints figures; it asserts nothing, targets are in the issue)
"""

from __future__ import annotations

import itertools
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fluxmon.core.spool import SessionRequest, SpoolReader, write_session
from harness.gitrepos import Repos, make_repos
from harness.processes import become_subreaper
from harness.spoolrecords import record

PUSHES = 20
COMMITS = 50
SPOOL_FILES = 200
_commit_numbers = itertools.count()


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def push_times(repos: Repos, count: int) -> list[float]:
    times = []
    for _ in range(count):
        index = next(_commit_numbers)
        repos.commit(f"bench/{index}.yaml", f"n: {index}\n", f"bench {index}")
        times.append(timed(lambda: repos.git("push", "-q", "origin", "main")))
        repos.settle()  # let the confirmer finish outside the timed part, as it does between real pushes
    return times


def commit_times(repos: Repos, count: int) -> list[float]:
    def commit(index: int) -> float:
        return timed(lambda: repos.git("commit", "-q", "--allow-empty", "-m", f"c{index}"))

    return [commit(index) for index in range(count)]


def spool_latencies(root: Path, count: int) -> list[float]:
    arrived: queue.Queue[tuple[str, int]] = queue.Queue()

    def on_session(session: SessionRequest) -> None:
        arrived.put((session.id, time.perf_counter_ns()))

    spool = root / "spool"
    reader = SpoolReader(spool, on_session=on_session)
    reader.start()
    latencies = []
    try:
        for index in range(count):
            written = time.perf_counter_ns()
            write_session(spool, record(f"bench-{index}"))
            _, received = arrived.get(timeout=10)
            latencies.append((received - written) / 1e6)
    finally:
        reader.stop()
    return latencies


def report(name: str, with_hooks: list[float], without: list[float], target: str) -> None:
    added = statistics.median(with_hooks) - statistics.median(without)
    print(
        f"{name}: median {statistics.median(without):.1f} ms without hooks, "
        f"{statistics.median(with_hooks):.1f} ms with; added {added:+.1f} ms (target: {target})"
    )


def main() -> None:
    become_subreaper()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        plain = make_repos(root / "plain", install_hooks=False)
        hooked = make_repos(root / "hooked")
        push_times(plain, 2)  # warm caches for both
        push_times(hooked, 2)
        report("git push", push_times(hooked, PUSHES), push_times(plain, PUSHES), "under 30 ms added")
        report("git commit", commit_times(hooked, COMMITS), commit_times(plain, COMMITS), "under 3 ms added")
        latencies = sorted(spool_latencies(root, SPOOL_FILES))
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(
            f"spool file landing -> reader delivered: p50 {statistics.median(latencies):.2f} ms, "
            f"p95 {p95:.2f} ms over {SPOOL_FILES} files (target: p95 under 50 ms)"
        )


if __name__ == "__main__":
    main()
