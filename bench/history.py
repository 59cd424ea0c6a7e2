"""Benchmark of the history: a full history (5,000 generated pushes, the default `history_limit`) read back, one
push appended to it (lock, dedupe, O_APPEND, fsync), and `fluxmon report` computed and drawn as a page.

The history is the one harness/histories.py makes for the tests. Run: .venv/bin/python -m bench.history [--save]
(prints figures, and keeps them in bench/results/history.json with --save; asserts nothing)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.results import Table, save
from fluxmon.core.config import DEFAULT_HISTORY_LIMIT
from fluxmon.core.report import build_report, report_lines
from fluxmon.core.store import History
from fluxmon.reportpage import report_html
from harness.histories import generate_history, write_history

RUNS = 5


def timed(what: str, action: Callable[[], object]) -> float:
    """Run `action` RUNS times; prints and returns the median in milliseconds."""
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds) * 1000
    print(f"{what:<48} median {median:8.1f} ms  (max {max(seconds) * 1000:.1f})")
    return median


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", action="store_true", help="keep the figures in bench/results/ for bench.report")
    args = parser.parse_args(argv)
    generated = generate_history(DEFAULT_HISTORY_LIMIT + 5)
    with tempfile.TemporaryDirectory(prefix="fluxmon-bench-history-") as scratch:
        directory = Path(scratch)
        directory.chmod(0o700)
        path = write_history(directory, generated.records[:DEFAULT_HISTORY_LIMIT])
        size_mb = path.stat().st_size / 1e6
        print(f"history: {DEFAULT_HISTORY_LIMIT} pushes, {size_mb:.1f} MB")
        history = History(directory)
        read_all = timed("read the whole history", lambda: history.read())
        read_tail = timed("read the newest 50 lines (the tray's menu)", lambda: history.read(tail=50))
        extra = iter(generated.records[DEFAULT_HISTORY_LIMIT:])
        append = timed("append one push (lock, dedupe, write, fsync)", lambda: history.append(next(extra)))
        records = history.read()
        compute = timed("compute the report", lambda: build_report(records))
        report = build_report(records)
        timed("print the report", lambda: report_lines(report))
        page = timed("draw the HTML page (5 SVG charts)", lambda: report_html(report))
        print(f"page: {len(report_html(report)) / 1e3:.0f} kB")
    if args.save:
        table = Table(
            name="history",
            columns=("what", "measured"),
            rows=(
                ("read the whole history (`fluxmon history`, `report`)", f"{read_all:,.0f} ms"),
                ("read the newest lines (the tray's menu)", f"{read_tail:,.0f} ms"),
                ("append one push: lock, look for the same push (a line at a time), write, fsync", f"{append:,.0f} ms"),
                ("compute the report / draw the HTML page (5 SVG charts)", f"{compute:,.0f} ms / {page:,.0f} ms"),
            ),
            notes=(
                f"A full history: {DEFAULT_HISTORY_LIMIT:,} generated pushes (harness/histories.py, the same "
                f"generator as the tests), {size_mb:.0f} MB; median of {RUNS}.",
            ),
        )
        print(f"saved {save(table)}")


if __name__ == "__main__":
    main()
