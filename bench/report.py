"""The README's benchmark tables and chart, drawn from what the benchmarks saved: never typed by hand.

Each benchmark run with `--save` leaves one JSON file in bench/results/ (bench/results.py). This writes each of
them into the README's "## Benchmarks" section, between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, with
the machine it was measured on, and draws docs/bench.png (latency and CPU against object count, fluxmon and the
poller) from the monitor-scale results.

    .venv/bin/python -m bench.report

Running it twice changes nothing. The text outside the markers (the prose) is left alone; markers with no results
keep their old text; results with no markers, or that cannot be read, are named on stderr and the exit code is 1,
so none is lost quietly.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.results import RESULTS_DIR, Table, load

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHART = ROOT / "docs" / "bench.png"
SECTION = "## Benchmarks"
SCALE = "monitor-scale"  # the table the chart is drawn from
COLOURS = {"fluxmon": "#1f77b4", "seed": "#d62728"}
LABELS = {"fluxmon": "fluxmon (list + watch)", "seed": "seed design (poll every 2 s)"}


def opening(name: str) -> str:
    return f"<!-- bench:{name} -->"


def closing(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def _cell(text: str) -> str:
    """A cell on one line, its `|` escaped so that it cannot split the row."""
    return " ".join(text.split()).replace("|", "\\|")


def render(table: Table, machine: str) -> str:
    """The table as Markdown: the table, its notes, and the machine it was measured on."""
    lines = [
        "| " + " | ".join(_cell(column) for column in table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table.rows]
    for note in table.notes:
        lines += ["", _cell(note)]
    lines += ["", f"*Measured on {_cell(machine)}.*"]
    return "\n".join(lines)


def section_bounds(text: str) -> tuple[int, int] | None:
    """Where the Benchmarks section starts and ends (the next heading of its level, or the end)."""
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(SECTION) + 2)
    return start, len(text) if end < 0 else end


def _marker_at(text: str, marker: str, start: int, end: int) -> int:
    """Where `marker` stands on a line of its own in text[start:end] (a marker quoted in prose is not one); or -1."""
    found = re.compile(f"^{re.escape(marker)}$", re.MULTILINE).search(text, start, end)
    return -1 if found is None else found.start()


def place(text: str, name: str, body: str) -> str | None:
    """`text` with `body` between the markers of `name` in the Benchmarks section; None if they are not there."""
    bounds = section_bounds(text)
    if bounds is None:
        return None
    start = _marker_at(text, opening(name), *bounds)
    end = _marker_at(text, closing(name), start, bounds[1]) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return f"{text[: start + len(opening(name))]}\n{body}\n{text[end:]}"


def marked(text: str) -> list[str]:
    """The names that have an opening marker in the Benchmarks section."""
    bounds = section_bounds(text)
    found = re.compile(r"^<!-- bench:([\w.-]+) -->$", re.MULTILINE)
    return [] if bounds is None else [match[1] for match in found.finditer(text, *bounds)]


def write_tables(text: str, results: Mapping[str, tuple[Table, str]]) -> tuple[str, list[str]]:
    """`text` with every saved table written between its markers; and the names that have no markers."""
    unplaced = []
    for name, (table, machine) in sorted(results.items()):
        placed = place(text, name, render(table, machine))
        if placed is None:
            unplaced.append(name)
        else:
            text = placed
    return text, unplaced


def load_all(directory: Path = RESULTS_DIR) -> tuple[dict[str, tuple[Table, str]], list[str]]:
    """Every saved table in `directory` by name, with the machine; and one line for each file that cannot be read."""
    results, unreadable = {}, []
    for path in sorted(directory.glob("*.json")):
        try:
            results[path.stem] = load(path.stem, directory)
        except (OSError, ValueError, KeyError, TypeError) as error:  # cut short, hand-edited, or another shape
            unreadable.append(f"{path} cannot be read ({type(error).__name__}: {error}): save it again")
    return results, unreadable


def draw_chart(table: Table, machine: str, path: Path) -> None:
    """docs/bench.png: p95 latency (log scale: the poller is in seconds, fluxmon in milliseconds) and CPU per
    status write against the objects in the cluster, fluxmon beside the poller."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    sizes: Sequence[Mapping[str, Any]] = table.data["sizes"]
    objects = [size["fluxmon"]["objects"] for size in sizes]
    ticks = [f"{size['fluxmon']['objects']:,}\n{size['fluxmon']['sessions']} sessions" for size in sizes]
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    latency, cpu = figure.subplots(1, 2)
    for follower in ("fluxmon", "seed"):
        style = {"color": COLOURS[follower], "label": LABELS[follower], "marker": "o", "linewidth": 2}
        for axes, key in ((latency, "p95_ms"), (cpu, "cpu_per_write_ms")):
            values = [size[follower][key] for size in sizes]
            axes.plot(objects, values, **style)
            for x, y in zip(objects, values, strict=True):
                axes.annotate(
                    f"{y:,.0f}" if y >= 100 else f"{y:.1f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 7 if follower == "seed" else -14),  # apart when the lines come close
                    ha="center",
                    fontsize=8,
                    color=COLOURS[follower],
                )
    latency.set_yscale("log")
    latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_minor_locator(NullLocator())
    latency.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
    latency.set_title("Status write → session snapshot, p95")
    latency.set_ylabel("milliseconds (log scale)")
    cpu.set_title("Follower's CPU per status write, during the storm")
    cpu.set_ylabel("milliseconds of CPU per write")
    cpu.set_ylim(bottom=0)
    for axes in (latency, cpu):
        axes.set_xscale("log")  # the sizes grow by factors: evenly spaced, and their labels apart
        axes.set_xticks(objects, ticks)
        axes.xaxis.set_minor_locator(NullLocator())
        axes.margins(x=0.08, y=0.12)
        axes.grid(True, alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        axes.legend(loc="best")
    figure.supxlabel("Flux objects in the cluster (and the sessions followed)", fontsize=10)
    writes = sizes[0]["fluxmon"]["writes"]
    figure.suptitle(
        f"bench.monitor --scale: {writes} status writes 50 ms apart at each size\nmeasured on {machine}",
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="the saved tables (bench/results)")
    parser.add_argument("--readme", type=Path, default=README, help="the README to write the tables into")
    parser.add_argument("--chart", type=Path, default=CHART, help="the chart to draw (docs/bench.png)")
    args = parser.parse_args(argv)
    results, unreadable = load_all(args.results)
    for line in unreadable:
        print(f"bench.report: {line}", file=sys.stderr)
    before = args.readme.read_text()
    if section_bounds(before) is None:
        print(f"bench.report: {args.readme} has no '{SECTION}' section: nothing written", file=sys.stderr)
        return 1
    after, unplaced = write_tables(before, results)
    if after != before:
        args.readme.write_text(after)
    placed = sorted(set(results) - set(unplaced))
    print(f"{args.readme}: {', '.join(placed) or 'no tables'} {'written' if after != before else 'already current'}")
    if waiting := [name for name in marked(before) if name not in results]:
        print(f"{args.readme}: {', '.join(waiting)} left as they were (no results saved)")
    if SCALE in results and not results[SCALE][0].data.get("sizes"):
        print(f"bench.report: {SCALE} has no sizes to draw: {args.chart} left as it was", file=sys.stderr)
        unreadable.append(SCALE)
    elif SCALE in results:
        draw_chart(*results[SCALE], args.chart)
        print(f"{args.chart}: drawn from {SCALE}")
    else:
        print(f"{args.chart}: left as it was (no {SCALE} results: python -m bench.monitor --scale --save)")
    for name in unplaced:
        print(
            f"bench.report: no place for {name}: add {opening(name)} and {closing(name)} to the README's "
            f"'{SECTION}' section",
            file=sys.stderr,
        )
    return 1 if unplaced or unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
