"""Benchmark of the history: a full history (5,000 generated pushes, the default `history_limit`) read back, one
push appended to it (lock, dedupe, O_APPEND, fsync), and `fluxmon report` computed and drawn as a page.

The history is the one harness/histories.py makes for the tests. Run: .venv/bin/python -m bench.history
(prints figures; asserts nothing)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fluxmon.core.config import DEFAULT_HISTORY_LIMIT
from fluxmon.core.report import build_report, report_lines
from fluxmon.core.store import History
from fluxmon.reportpage import report_html
from harness.histories import generate_history, write_history

RUNS = 5


def timed(what: str, action: Callable[[], object]) -> None:
    seconds = []
    for _ in range(RUNS):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    print(f"{what:<48} median {statistics.median(seconds) * 1000:8.1f} ms  (max {max(seconds) * 1000:.1f})")


def main() -> None:
    generated = generate_history(DEFAULT_HISTORY_LIMIT + 5)
    with tempfile.TemporaryDirectory(prefix="fluxmon-bench-history-") as scratch:
        directory = Path(scratch)
        directory.chmod(0o700)
        path = write_history(directory, generated.records[:DEFAULT_HISTORY_LIMIT])
        print(f"history: {DEFAULT_HISTORY_LIMIT} pushes, {path.stat().st_size / 1e6:.1f} MB")
        history = History(directory)
        timed("read the whole history", lambda: history.read())
        timed("read the newest 20 (the tray's menu)", lambda: history.read(tail=50))
        extra = iter(generated.records[DEFAULT_HISTORY_LIMIT:])
        timed("append one push (lock, dedupe, write, fsync)", lambda: history.append(next(extra)))
        records = history.read()
        timed("compute the report", lambda: build_report(records))
        report = build_report(records)
        timed("print the report", lambda: report_lines(report))
        timed("draw the HTML page (5 SVG charts)", lambda: report_html(report))
        print(f"page: {len(report_html(report)) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
