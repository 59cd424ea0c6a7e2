"""Benchmark of push capture: what the hooks add to `git push` and `git commit`, and how soon a push's session
reaches the app.

Run: .venv/bin/python -m bench.hooks [--save]   (about 2 minutes; prints figures, asserts nothing)

It measures as issue #16 asks, side by side in one run, on two clones of their own (one with the hooks, one
without), each pushing to its own local bare remote:
- pushes one second apart, alternating without and with the hooks: the median and spread of each, and what the
  hooks add at the median;
- back-to-back pushes (`commit && push`, as fast as git goes), in bursts alternating without and with the hooks;
- `git commit`, alternating without and with (the reference-transaction hook runs on every commit);
- from `git push` returning to its session reaching a spool reader (the app's side), for every hooked push:
  p50, p95 and max, one second apart and back to back;
- the CPU that a push costs, with everything it starts (git, the hooks, the confirmer), per push of a burst.

`--save` also writes the table to bench/results/hooks.json (bench/results.py), for the README.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import Table, save
from fluxmon.core.spool import SessionRequest, SpoolReader
from harness.gitrepos import Repos, make_repos
from harness.processes import become_subreaper

APART = 30
"""Pushes one second apart, with the hooks (and as many without, alternating)."""
APART_SECONDS = 1.0
BURST = 20
BURSTS = 2
"""Bursts of back-to-back pushes with the hooks (and as many without, alternating)."""
COMMITS = 60
SESSION_WAIT_SECONDS = 30.0
PUSH_ADDED_TARGET_MS = 15.0
COMMIT_ADDED_TARGET_MS = 2.0
SESSION_TARGET_MS = 1000.0

_numbers = itertools.count()


def timed_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


class Arrivals:
    """Sessions as the app receives them (a real SpoolReader on the hooked clone's spool), by pushed commit."""

    def __init__(self, spool: Path) -> None:
        self._arrived: dict[str, float] = {}
        self._changed = threading.Condition()
        self._reader = SpoolReader(spool, on_session=self._on_session)

    def __enter__(self) -> Arrivals:
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._reader.stop()

    def _on_session(self, session: SessionRequest) -> None:
        with self._changed:
            self._arrived[session.new_sha] = time.perf_counter()
            self._changed.notify_all()

    def wait(self, shas: Sequence[str], timeout: float = SESSION_WAIT_SECONDS) -> dict[str, float]:
        """When each of `shas` arrived (perf_counter seconds); the ones that did not within `timeout` are missing."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(sha in self._arrived for sha in shas):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return {sha: self._arrived[sha] for sha in shas if sha in self._arrived}


@dataclass
class Pushes:
    """Push durations (ms), and for hooked pushes how long after each returned its session arrived (ms)."""

    times: list[float] = field(default_factory=list)
    session_delays: list[float] = field(default_factory=list)
    lost: int = 0


def commit_and_push(repos: Repos) -> tuple[str, float, float]:
    """A new commit (not timed), then `git push`: the sha, how long the push took (ms), and when it returned."""
    index = next(_numbers)
    sha = repos.commit(f"bench/{index}.yaml", f"n: {index}\n", f"bench {index}")
    took = timed_ms(lambda: repos.git("push", "-q", "origin", "main"))
    return sha, took, time.perf_counter()


def note_sessions(pushes: Pushes, arrivals: Arrivals, returned: dict[str, float]) -> None:
    arrived = arrivals.wait(list(returned))
    pushes.session_delays.extend((arrived[sha] - returned[sha]) * 1000 for sha in returned if sha in arrived)
    pushes.lost += len(returned) - len(arrived)


def pushes_apart(plain: Repos, hooked: Repos, arrivals: Arrivals, count: int) -> tuple[Pushes, Pushes]:
    """`count` pairs of pushes, one every APART_SECONDS, alternating without and with the hooks."""
    without, with_hooks = Pushes(), Pushes()
    slot = time.monotonic()
    for _ in range(count):
        for repos, pushes in ((plain, without), (hooked, with_hooks)):
            slot += APART_SECONDS
            time.sleep(max(0.0, slot - time.monotonic()))
            sha, took, returned = commit_and_push(repos)
            pushes.times.append(took)
            if repos is hooked:
                note_sessions(pushes, arrivals, {sha: returned})
    return without, with_hooks


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def burst(repos: Repos, pushes: Pushes, arrivals: Arrivals | None, size: int) -> float:
    """`size` back-to-back `commit && push`; returns the CPU of everything they started, per push (ms)."""
    repos.settle()
    cpu_before = children_cpu_seconds()
    returned = {}
    for _ in range(size):
        sha, took, at = commit_and_push(repos)
        pushes.times.append(took)
        returned[sha] = at
    if arrivals is not None:
        note_sessions(pushes, arrivals, returned)
    repos.settle()  # reaps the confirmers (this process is their subreaper), so their CPU is counted
    return (children_cpu_seconds() - cpu_before) * 1000 / size


def commits(plain: Repos, hooked: Repos, count: int) -> tuple[list[float], list[float]]:
    without: list[float] = []
    with_hooks: list[float] = []
    for index in range(count):
        for repos, times in ((plain, without), (hooked, with_hooks)):
            times.append(timed_ms(lambda: repos.git("commit", "-q", "--allow-empty", "-m", f"c{index}")))  # noqa: B023
    return without, with_hooks


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def spread(values: Sequence[float]) -> str:
    """Median, with the middle half and the extremes: `12.3 ms (p25 11.0 to p75 14.2, max 30.1)`."""
    return (
        f"{statistics.median(values):.1f} ms (p25 {percentile(values, 0.25):.1f}, "
        f"p75 {percentile(values, 0.75):.1f}, max {max(values):.1f})"
    )


def added(without: Sequence[float], with_hooks: Sequence[float]) -> float:
    return statistics.median(with_hooks) - statistics.median(without)


def delays(pushes: Pushes) -> str:
    values = pushes.session_delays
    if not values:
        return f"none arrived ({pushes.lost} lost)"
    lost = f"; {pushes.lost} never arrived" if pushes.lost else ""
    return (
        f"p50 {statistics.median(values):.0f} ms, p95 {percentile(values, 0.95):.0f} ms, "
        f"max {max(values):.0f} ms ({len(values)} sessions{lost})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hooks", description="What push capture costs.")
    parser.add_argument("--save", action="store_true", help="also write bench/results/hooks.json")
    parser.add_argument("--apart", type=int, default=APART, help=f"pushes one second apart, each way ({APART})")
    parser.add_argument("--burst", type=int, default=BURST, help=f"back-to-back pushes per burst ({BURST})")
    args = parser.parse_args(argv)
    become_subreaper()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        plain = make_repos(root / "plain", install_hooks=False)
        hooked = make_repos(root / "hooked")
        with Arrivals(hooked.spool) as arrivals:
            for repos in (plain, hooked):  # warm the caches of both
                commit_and_push(repos)
            hooked.settle()
            apart_without, apart_with = pushes_apart(plain, hooked, arrivals, args.apart)
            burst_without, burst_with = Pushes(), Pushes()
            cpu_without: list[float] = []
            cpu_with: list[float] = []
            for _ in range(BURSTS):
                cpu_without.append(burst(plain, burst_without, None, args.burst))
                cpu_with.append(burst(hooked, burst_with, arrivals, args.burst))
        commit_without, commit_with = commits(plain, hooked, COMMITS)

    rows = [
        (
            f"`git push` one second apart, median of {args.apart} each way",
            f"{added(apart_without.times, apart_with.times):+.1f} ms with the hooks: "
            f"{spread(apart_with.times)} against {spread(apart_without.times)}",
            f"at most +{PUSH_ADDED_TARGET_MS:.0f} ms",
        ),
        (
            f"`git push` back to back, {BURSTS} bursts of {args.burst} each way",
            f"{added(burst_without.times, burst_with.times):+.1f} ms with the hooks: "
            f"{spread(burst_with.times)} against {spread(burst_without.times)}",
            f"at most +{PUSH_ADDED_TARGET_MS:.0f} ms",
        ),
        (
            f"`git commit`, median of {COMMITS} each way",
            f"{added(commit_without, commit_with):+.1f} ms with the hooks: "
            f"{spread(commit_with)} against {spread(commit_without)}",
            f"at most +{COMMIT_ADDED_TARGET_MS:.0f} ms",
        ),
        (
            "`git push` returned → its session received by the app, one second apart",
            delays(apart_with),
            f"within {SESSION_TARGET_MS / 1000:.0f} s",
        ),
        (
            "`git push` returned → its session received by the app, back to back",
            delays(burst_with),
            f"within {SESSION_TARGET_MS / 1000:.0f} s",
        ),
        (
            "CPU per back-to-back `commit && push` (git, hooks, confirmer)",
            f"{statistics.mean(cpu_with):.0f} ms with the hooks, {statistics.mean(cpu_without):.0f} ms without",
            "",
        ),
    ]
    table = Table(
        name="hooks",
        columns=("what", "measured", "target"),
        rows=tuple(rows),
        notes=("Each clone pushes to a local bare remote; pushes with and without the hooks alternate in one run.",),
        data={
            "push_apart_ms": {"without": apart_without.times, "with": apart_with.times},
            "push_burst_ms": {"without": burst_without.times, "with": burst_with.times},
            "commit_ms": {"without": commit_without, "with": commit_with},
            "session_delay_ms": {"apart": apart_with.session_delays, "burst": burst_with.session_delays},
            "sessions_lost": apart_with.lost + burst_with.lost,
            "cpu_per_push_ms": {"without": cpu_without, "with": cpu_with},
        },
    )
    for what, measured, target in rows:
        print(f"{what}: {measured}" + (f" (target: {target})" if target else ""))
    if args.save:
        print(f"saved {save(table)}")


if __name__ == "__main__":
    main()
