"""bench.report writes the saved benchmark tables into the README between their markers and draws the chart.

No benchmark runs here: the tables are made by hand, saved with bench.results.save as a benchmark would, and
written into a small README in tmp_path.
"""

from __future__ import annotations

import struct
from dataclasses import asdict
from pathlib import Path

import pytest

from bench import report
from bench.monitor import Figures
from bench.results import Table, save

README = """# Project

<!-- bench:monitor -->
Outside the section: never touched.
<!-- /bench:monitor -->

## Benchmarks

Prose before the monitor table; quoted in it, `<!-- bench:monitor -->` is not a marker.

<!-- bench:monitor -->
| old | table |
|---|---|
| typed | by hand |
<!-- /bench:monitor -->

Prose between the tables.

<!-- bench:hooks -->
The hooks' old table, for which nothing is saved.
<!-- /bench:hooks -->

Prose after the tables.

## Next section

<!-- bench:monitor -->
Also outside the section.
<!-- /bench:monitor -->
"""

MONITOR = Table(
    name="monitor",
    columns=("", "p95", "CPU"),
    rows=(("fluxmon", "4.5 ms", "1.2 s"), ("seed | poller", "2,258 ms", "1.5 s")),
    notes=("1000 Flux objects, 10 sessions, 200 status writes 50 ms apart",),
)


def figures(follower: str, objects: int, sessions: int, *, p95_ms: float, cpu_per_write_ms: float) -> Figures:
    return Figures(
        follower=follower,
        objects=objects,
        sessions=sessions,
        writes=200,
        changes_seen=200,
        p50_ms=p95_ms / 2,
        p95_ms=p95_ms,
        first_verdicts_seconds=1.0,
        startup_cpu_seconds=0.5,
        storm_seconds=15.0,
        storm_cpu_seconds=cpu_per_write_ms * 0.2,
        cpu_per_write_ms=cpu_per_write_ms,
        peak_rss_mib=80.0,
        requests_per_session_minute=5.0,
    )


SCALE = Table(
    name="monitor-scale",
    columns=("size", "p95 (fluxmon / seed)"),
    rows=(("1,000 objects, 10 sessions", "5 ms / 2,258 ms"), ("10,000 objects, 50 sessions", "9 ms / 7,551 ms")),
    data={
        "sizes": [
            {
                "fluxmon": asdict(figures("fluxmon", 1000, 10, p95_ms=5.0, cpu_per_write_ms=6.0)),
                "seed": asdict(figures("seed", 1000, 10, p95_ms=2258.0, cpu_per_write_ms=6.7)),
            },
            {
                "fluxmon": asdict(figures("fluxmon", 10000, 50, p95_ms=9.0, cpu_per_write_ms=6.5)),
                "seed": asdict(figures("seed", 10000, 50, p95_ms=7551.0, cpu_per_write_ms=24.2)),
            },
        ]
    },
)


def between(text: str, name: str, start: int) -> str:
    """What stands between the markers of `name` found from `start` on."""
    opening = text.index(f"\n{report.opening(name)}\n", start) + len(report.opening(name)) + 1
    return text[opening : text.index(f"\n{report.closing(name)}\n", opening) + 1]


def test_a_table_is_written_between_its_markers_and_the_text_around_it_is_kept() -> None:
    text, unplaced = report.write_tables(README, {"monitor": (MONITOR, "2 cores (Test CPU), Python 3.11")})

    assert unplaced == []
    section = text.index("## Benchmarks")
    assert between(text, "monitor", section) == "\n" + report.render(MONITOR, "2 cores (Test CPU), Python 3.11") + "\n"
    assert "| fluxmon | 4.5 ms | 1.2 s |" in text
    assert "| seed \\| poller | 2,258 ms | 1.5 s |" in text  # a `|` in a cell cannot split the row
    assert "*Measured on 2 cores (Test CPU), Python 3.11.*" in text
    assert "typed" not in text
    # Everything outside the markers of the section is as it was: the prose, the markers elsewhere, other tables.
    opening = README.index(f"\n{report.opening('monitor')}\n", README.index("## Benchmarks"))
    closing = README.index(f"\n{report.closing('monitor')}\n", opening)
    assert text.startswith(README[: opening + len(report.opening("monitor")) + 1])
    assert text.endswith(README[closing + 1 :])


def test_only_markers_on_lines_of_their_own_in_the_section_count() -> None:
    assert report.marked(README) == ["monitor", "hooks"]


def test_writing_twice_changes_nothing() -> None:
    results = {"monitor": (MONITOR, "2 cores"), "monitor-scale": (SCALE, "2 cores")}
    once, _ = report.write_tables(README, results)
    twice, _ = report.write_tables(once, results)
    assert twice == once


def test_a_table_without_markers_is_named_and_one_without_results_keeps_its_text() -> None:
    text, unplaced = report.write_tables(README, {"monitor-scale": (SCALE, "2 cores"), "monitor": (MONITOR, "x")})

    assert unplaced == ["monitor-scale"]
    assert "The hooks' old table, for which nothing is saved." in text
    assert "10,000 objects" not in text


def test_main_writes_the_readme_draws_the_chart_and_a_second_run_changes_neither(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    save(MONITOR, results)
    save(SCALE, results)
    readme = tmp_path / "README.md"
    scale_markers = f"{report.opening('monitor-scale')}\n{report.closing('monitor-scale')}\n\n<!-- bench:hooks -->"
    readme.write_text(README.replace("<!-- bench:hooks -->", scale_markers, 1))
    chart = tmp_path / "docs" / "bench.png"
    arguments = ["--results", str(results), "--readme", str(readme), "--chart", str(chart)]

    assert report.main(arguments) == 0
    written, drawn = readme.read_text(), chart.read_bytes()
    assert "| 10,000 objects, 50 sessions | 9 ms / 7,551 ms |" in written
    assert "| fluxmon | 4.5 ms | 1.2 s |" in written
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", drawn[16:24])  # the IHDR chunk: a chart of a readable size
    assert (width, height) == (1000, 460)
    assert "hooks left as they were" in capsys.readouterr().out

    assert report.main(arguments) == 0
    assert readme.read_text() == written
    assert chart.read_bytes() == drawn
    assert "already current" in capsys.readouterr().out


def test_main_says_which_saved_table_has_no_place_in_the_readme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    save(MONITOR, results)
    save(Table(name="assess", columns=("what", "measured"), rows=(("60 MB", "1 s"),)), results)
    readme = tmp_path / "README.md"
    readme.write_text(README)

    assert report.main(["--results", str(results), "--readme", str(readme), "--chart", str(tmp_path / "c.png")]) == 1
    assert "no place for assess: add <!-- bench:assess --> and <!-- /bench:assess -->" in capsys.readouterr().err
    assert "| fluxmon | 4.5 ms | 1.2 s |" in readme.read_text()  # the others are written all the same
    assert not (tmp_path / "c.png").exists()  # no monitor-scale results: no chart


def test_a_results_file_that_cannot_be_read_is_named_and_the_others_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    save(MONITOR, results)
    (results / "hooks.json").write_text('{"name": "hooks", "columns": [')  # cut short
    readme = tmp_path / "README.md"
    readme.write_text(README)

    assert report.main(["--results", str(results), "--readme", str(readme), "--chart", str(tmp_path / "c.png")]) == 1
    assert f"{results / 'hooks.json'} cannot be read (JSONDecodeError" in capsys.readouterr().err
    assert "| fluxmon | 4.5 ms | 1.2 s |" in readme.read_text()
    assert "The hooks' old table, for which nothing is saved." in readme.read_text()


def test_the_readme_has_a_place_for_every_benchmark_and_its_tables_are_the_saved_ones() -> None:
    text = report.README.read_text()
    assert {"monitor", "monitor-scale", "clusters", "hooks", "tray", "history", "assess"} <= set(report.marked(text))
    results, unreadable = report.load_all()
    assert unreadable == []
    current, unplaced = report.write_tables(text, results)
    assert unplaced == []
    assert current == text, "the README's tables differ from bench/results/: run python -m bench.report"
