"""Benchmark results kept as data, so the README's tables and the chart are drawn from what was measured.

Each benchmark prints its figures, and with `--save` also writes them as one JSON file under `bench/results/`,
named after the benchmark. `bench/report.py` reads those files: it writes each table into the README's Benchmarks
section (between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`) and draws `docs/bench.png`. A table in the
README is therefore never typed by hand, and it always names the machine it was measured on.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).with_name("results")


@dataclass(frozen=True, kw_only=True)
class Table:
    """One benchmark's figures as the README shows them: a header, rows of cells, and notes under the table."""

    name: str  # the file name under bench/results/ and the README marker: "monitor", "hooks", ...
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)  # raw figures, for charts (bench/report.py)


def machine() -> str:
    """The machine in one line, as the README states it beside every table."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {memory_kib / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        memory = ""
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores{f' ({model})' if model else ''}{memory}, Python {platform.python_version()}"


def peak_rss_kib() -> int:
    """This process's peak resident memory, in KiB.

    Read from /proc (VmHWM), not getrusage: a spawned child's ru_maxrss starts at its parent's peak (Linux keeps it
    across fork and exec), so a benchmark whose parent holds the simulated cluster would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def save(table: Table, directory: Path = RESULTS_DIR) -> Path:
    """Write the table with the machine it was measured on; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{table.name}.json"
    record = {"machine": machine(), **asdict(table)}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load(name: str, directory: Path = RESULTS_DIR) -> tuple[Table, str]:
    """A saved table and the machine it was measured on."""
    record = json.loads((directory / f"{name}.json").read_text())
    table = Table(
        name=record["name"],
        columns=tuple(record["columns"]),
        rows=tuple(tuple(row) for row in record["rows"]),
        notes=tuple(record.get("notes", ())),
        data=record.get("data", {}),
    )
    return table, record["machine"]
