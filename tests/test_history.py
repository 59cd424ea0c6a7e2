"""A history to rely on (#15 item 4, #14 item 4): concurrent appenders in real processes, a torn last line,
retention, records of older versions, one record per push whoever followed it; `fluxmon history` and `report`
over a generated history of a few thousand pushes, and the HTML page's charts and figures."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.config import Config, Retention, load_config
from fluxmon.core.push import combine
from fluxmon.core.report import HistoryFilter, build_report, history_row, percentile, report_lines, select
from fluxmon.core.session import SessionState
from fluxmon.core.store import (
    HISTORY_FILE,
    OWNER,
    RECORD_VERSION,
    History,
    SessionStore,
    command_record,
    migrate,
    push_from_record,
    push_record,
)
from fluxmon.follow import record_outcome
from fluxmon.reportpage import CHART_IDS, report_html, report_png, tray_report
from harness.histories import generate_history, write_history
from harness.snapshots import APPS, COMMIT, failed_snapshot, snapshot

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_790_000_000.0


def record(number: int, **changes: Any) -> dict[str, Any]:
    """A history record as the tray appends it: push number `number`, its own commit."""
    made = replace(snapshot(), id=f"push-{number}", commit=f"{number:040x}", started_at=NOW + number)
    push = combine([replace(made, updated_at=NOW + number + 42, ended_at=NOW + number + 42)])
    return {**push_record(push), "follower": OWNER, "recorded_at": NOW + number, **changes}


def lines(directory: Path) -> list[str]:
    return (directory / HISTORY_FILE).read_text(encoding="utf-8").splitlines()


# --- concurrent writers ----------------------------------------------------------------------------------------

APPENDER = """
import sys
from pathlib import Path
from fluxmon.core.config import Retention
from fluxmon.core.store import History, OWNER
directory, name, count, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
history = History(directory, Retention(limit=limit))
big = "x" * 200_000  # far more than a pipe's or a stdio buffer's atomic size: one write() must still be whole
sys.stdin.readline()  # the start line: both processes go at once
for number in range(count):
    record = {"version": 2, "id": f"{name}-{number}", "key": f"{name} {number}", "follower": OWNER,
              "state": "succeeded", "commit": f"{number:040x}", "branch": "main", "remote": name, "started_at": 1.0,
              "recorded_at": 9e9, "clusters": [], "resources": [], "subject": big}
    history.append(record, now=9e9)
print("done", flush=True)
"""


def appenders(directory: Path, count: int, limit: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(directory), name, str(count), str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in ("tray", "wait")
    ]


def start_and_finish(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        out, _ = process.communicate(timeout=90)
        assert (process.returncode, out) == (0, "done\n")


def test_two_processes_appending_at_once_lose_nothing_and_tear_nothing(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    start_and_finish(appenders(tmp_path, count=60, limit=1000))
    written = lines(tmp_path)
    assert len(written) == 120
    ids = [json.loads(line)["id"] for line in written]  # every line whole: one record each
    assert sorted(ids) == sorted([f"tray-{n}" for n in range(60)] + [f"wait-{n}" for n in range(60)])
    # Each process's own records in its order: O_APPEND under the lock puts each at the end.
    assert [i for i in ids if i.startswith("tray")] == [f"tray-{n}" for n in range(60)]
    history = History(tmp_path)
    assert len(history.read(now=9e9)) == 120
    assert history.unreadable == 0


def test_two_processes_appending_while_retention_trims_keep_the_newest_of_both(tmp_path: Path) -> None:
    """Trimming rewrites the file under the same lock: an append never lands in a file already replaced."""
    tmp_path.chmod(0o700)
    start_and_finish(appenders(tmp_path, count=60, limit=20))
    written = [json.loads(line)["id"] for line in lines(tmp_path)]
    assert 20 <= len(written) <= 22  # the limit, and a tenth more before the next rewrite
    history = History(tmp_path, Retention(limit=20))
    kept = [r["id"] for r in history.read(now=9e9)]
    assert len(kept) == 20
    assert kept[-1] in ("tray-59", "wait-59")  # the last append of all is there
    for name in ("tray", "wait"):
        mine = [int(i.split("-")[1]) for i in kept if i.startswith(name)]
        # What is left of each process's appends is its newest, with no hole: an append that landed in a file
        # already replaced by the other's rewrite would be lost, and leave one.
        assert mine == list(range(60 - len(mine), 60))


# --- torn lines, damage, versions ------------------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_on_a_new_line(tmp_path: Path) -> None:
    history = History(tmp_path)
    for number in range(3):
        history.append(record(number), now=NOW)
    whole = json.dumps(record(3)).encode()
    with (tmp_path / HISTORY_FILE).open("ab") as handle:
        handle.write(whole[: len(whole) // 2])  # a writer killed mid-record, or a full disk
    assert [r["id"] for r in history.read(now=NOW)] == ["push-0", "push-1", "push-2"]
    assert history.unreadable == 1
    history.append(record(4), now=NOW)
    assert [r["id"] for r in history.read(now=NOW)] == ["push-0", "push-1", "push-2", "push-4"]
    assert history.unreadable == 1  # the torn piece stays alone on its line: push-4 is not glued to it
    assert lines(tmp_path)[-1] == json.dumps(record(4))


def test_a_damaged_line_in_the_middle_costs_only_itself(tmp_path: Path) -> None:
    write_history(tmp_path, [record(0), record(1)])
    with (tmp_path / HISTORY_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"id": "no state"}\n\x00\x00garbage\n[1, 2]\n')
    History(tmp_path).append(record(2), now=NOW)
    history = History(tmp_path)
    assert [r["id"] for r in history.read(now=NOW)] == ["push-0", "push-1", "push-2"]
    assert history.unreadable == 3


def test_records_of_every_older_version_read_back_in_the_current_shape(tmp_path: Path) -> None:
    current = record(1)
    version_1 = {k: v for k, v in record(2).items() if k not in ("version", "key", "follower", "recorded_at")}
    for resource in version_1["resources"]:
        del resource["ready_after_seconds"]
    before_clusters = {k: v for k, v in record(3).items() if k not in ("version", "key", "follower", "clusters")}
    before_clusters.pop("failed_on")
    for resource in before_clusters["resources"]:
        del resource["context"], resource["ready_after_seconds"]
    newer = {**record(4), "version": RECORD_VERSION + 1, "something_new": {"x": 1}}
    write_history(tmp_path, [current, version_1, before_clusters, newer])
    records = History(tmp_path).read(now=NOW + 10)
    assert [r["id"] for r in records] == ["push-1", "push-2", "push-3", "push-4"]
    assert {r["version"] for r in records[:3]} == {RECORD_VERSION}
    assert records[1]["key"] == records[0]["key"].replace(f"{1:040x}", f"{2:040x}")
    assert records[2]["clusters"][0]["context"] == ""
    assert records[2]["clusters"][0]["state"] == "succeeded"
    ready = next(r for r in records[2]["resources"] if r["name"] == "apps")
    assert ready["ready_after_seconds"] == 0.0  # from seconds_in_phase: the fixture was Ready all along
    for each in records:
        assert push_from_record(each).state is SessionState.SUCCEEDED  # the tray's menu reads them all
    assert build_report(records).pushes == 4


def test_migrate_refuses_what_no_version_wrote() -> None:
    for bad, why in (
        ([], "not a JSON object"),
        ({"id": "x"}, "no 'state'"),
        ({**record(1), "state": "exploded"}, "'exploded' is not a valid SessionState"),
        ({**record(1), "version": "2"}, "version '2' is not a number"),
    ):
        with pytest.raises(ValueError, match=re.escape(why)):
            migrate(bad)


# --- commands on outcome (#14 item 2) ---------------------------------------------------------------------------


def ran(
    push: dict[str, Any],
    *,
    delivery: str,
    result: str = "exited",
    exit_status: int | None = 0,
    follower: str = "wait",
    recorded_at: float | None = None,
) -> dict[str, Any]:
    """A command's record as the process that ran it for `push` appends it."""
    made = command_record(
        key=push["key"], push_id=push["id"], delivery=delivery, command="smoke.sh",
        run=["./smoke.sh", delivery], outcome=push["state"], result=result, exit_status=exit_status, error="",
        finished_at=NOW + 50, follower=follower,
    )  # fmt: skip
    return {**made, "recorded_at": push["recorded_at"] + 1 if recorded_at is None else recorded_at}


def test_a_commands_result_joins_its_push_whoever_ran_it_and_whenever(tmp_path: Path) -> None:
    """`wait` runs the command before it records the push; the tray long after: either way it reads back in the
    push's `commands`, and in the record that stands for the push (the tray's), not beside it."""
    first, second = record(1), record(2)
    by_wait = {**record(2, id="wait-2", follower="wait")}
    write_history(
        tmp_path,
        [
            ran(first, delivery="a", recorded_at=NOW),  # before its push's record
            first,
            second,
            by_wait,
            ran(by_wait, delivery="b", result="timed-out", exit_status=None),  # wait ran it, the tray's stands
            ran(second, delivery="c", result="not-found", exit_status=None, follower=OWNER),
        ],
    )
    records = History(tmp_path).read(now=NOW + 100)
    assert [r["id"] for r in records] == ["push-1", "push-2"]
    assert [(c["run"][-1], c["result"], c["exit_status"]) for c in records[0]["commands"]] == [("a", "exited", 0)]
    assert [(c["run"][-1], c["result"], c["follower"]) for c in records[1]["commands"]] == [
        ("b", "timed-out", "wait"),
        ("c", "not-found", OWNER),
    ]
    assert history_row(records[1])[-1].endswith(" · commands: smoke.sh timed out, smoke.sh not found")
    assert history_row(records[0])[-1].endswith(" · commands: 1 ok")


def test_a_history_written_before_commands_were_recorded_still_reads(tmp_path: Path) -> None:
    """A version 2 line (the shape before #14's command records) and a version 1 line read back, with no
    commands, beside a version 3 push that has one; an older fluxmon's readers skip the command's line alone."""
    version_2 = {**record(1), "version": 2}
    version_1 = {k: v for k, v in record(2).items() if k not in ("version", "key", "follower", "recorded_at")}
    current = record(3)
    write_history(tmp_path, [version_2, version_1, current, ran(current, delivery="a", exit_status=1)])
    history = History(tmp_path)
    records = history.read(now=NOW + 100)
    assert [(r["id"], len(r["commands"])) for r in records] == [("push-1", 0), ("push-2", 0), ("push-3", 1)]
    assert history.unreadable == 0
    assert history_row(records[0])[-1] == history_row({**version_2, "commands": []})[-1]  # no mark
    assert history_row(records[2])[-1].endswith("commands: smoke.sh exit 1")
    assert "state" not in ran(current, delivery="a")  # what a version 2 reader requires: it skips the line


def test_a_commands_result_is_appended_once_and_goes_with_its_push(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, retention=Retention(limit=2))
    pushes = [record(number) for number in range(4)]
    history = store.history_file
    assert history.append(pushes[0], now=NOW) == set()
    assert store.record_command(ran(pushes[0], delivery="zero"))
    assert not store.record_command(ran(pushes[0], delivery="zero"))  # already there: not twice
    for push in pushes[1:]:
        history.append(push, now=NOW)
        history.append(ran(push, delivery=push["id"]), now=NOW)
    assert [(r["id"], [c["run"][-1] for c in r["commands"]]) for r in history.read(now=NOW)] == [
        ("push-2", ["push-2"]),
        ("push-3", ["push-3"]),
    ]
    assert not any('"zero"' in line for line in lines(tmp_path))  # trimmed with its push


def test_commands_records_do_not_count_against_the_limit_of_pushes(tmp_path: Path) -> None:
    """Retention keeps `history_limit` pushes: their commands' lines are not pushes, and do not make every append
    rewrite the file."""
    history = History(tmp_path, Retention(limit=10))
    for number in range(10):
        push = record(number)
        assert history.append(push, now=NOW) == set()  # not trimmed
        for delivery in ("a", "b"):
            assert history.append(ran(push, delivery=f"{number}{delivery}"), now=NOW) == set()
    assert len(lines(tmp_path)) == 30
    assert [len(r["commands"]) for r in history.read(now=NOW)] == [2] * 10


def test_migrate_refuses_a_command_record_it_cannot_read() -> None:
    for bad, why in (
        ({"kind": "reboot", "id": "x"}, "kind 'reboot'"),
        ({k: v for k, v in ran(record(1), delivery="a").items() if k != "result"}, "no 'result'"),
    ):
        with pytest.raises(ValueError, match=re.escape(why)):
            migrate(bad)


# --- retention -------------------------------------------------------------------------------------------------


def test_retention_by_count_keeps_the_newest(tmp_path: Path) -> None:
    history = History(tmp_path, Retention(limit=10))
    for number in range(30):
        history.append(record(number), now=NOW + 100)
    assert len(lines(tmp_path)) <= 11
    assert [r["id"] for r in history.read(now=NOW + 100)] == [f"push-{n}" for n in range(20, 30)]


def test_retention_by_age_lets_old_pushes_go(tmp_path: Path) -> None:
    week = 7 * 86400.0
    history = History(tmp_path, Retention(max_age=week))
    for number in range(5):
        history.append(record(number, recorded_at=NOW - 10 * 86400), now=NOW - 10 * 86400)
    history.append(record(5, recorded_at=NOW), now=NOW)
    assert [r["id"] for r in history.read(now=NOW)] == ["push-5"]
    assert len(lines(tmp_path)) == 1  # rewritten: older than the age and a tenth


def test_the_store_forgets_untold_markers_of_pushes_retention_let_go(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, retention=Retention(limit=2))
    for number in range(4):
        push = combine([replace(snapshot(), id=f"push-{number}", commit=f"{number:040x}")])
        store.untell(push.id)
        store.finish(push)
    assert sorted(p.name for p in (tmp_path / "untold").iterdir()) == ["push-2", "push-3"]


def test_config_sets_the_retention(tmp_path: Path) -> None:
    (tmp_path / "fluxmon").mkdir()
    (tmp_path / "fluxmon" / "config.toml").write_text('history_limit = 100\nhistory_max_age = "30d"\n')
    config = load_config(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.retention == Retention(limit=100, max_age=30 * 86400.0)
    (tmp_path / "fluxmon" / "config.toml").write_text("history_limit = 0\n")
    (warning,) = load_config(environ={"XDG_CONFIG_HOME": str(tmp_path)}).warnings
    assert "history_limit: expected a whole number of pushes" in warning


# --- one push, one record --------------------------------------------------------------------------------------


def wait_record(number: int, state: SessionState = SessionState.SUCCEEDED, **changes: Any) -> dict[str, Any]:
    """The same push as `record(number)`, as `fluxmon wait` followed it (its own id)."""
    made = snapshot(state) if state is not SessionState.FAILED else failed_snapshot()
    push = combine([replace(made, id=f"cli-{number}", commit=f"{number:040x}", started_at=NOW + number)])
    return {**push_record(push), "follower": "wait", "recorded_at": NOW + number, **changes}


def test_a_push_the_tray_recorded_is_not_recorded_again_by_wait(tmp_path: Path) -> None:
    history = History(tmp_path)
    assert history.append(record(1), now=NOW) is not None
    assert history.append(wait_record(1), now=NOW) is None  # the same push, no more final
    assert history.append(wait_record(2), now=NOW) is not None  # another push
    assert [r["id"] for r in history.read(now=NOW)] == ["push-1", "cli-2"]


def test_the_most_final_record_of_a_push_stands_for_it(tmp_path: Path) -> None:
    history = History(tmp_path)
    history.append(wait_record(1, SessionState.TIMED_OUT), now=NOW)  # wait gave up early
    history.append(record(1), now=NOW)  # the tray saw it deployed
    history.append(wait_record(1, SessionState.TIMED_OUT), now=NOW)  # nothing new: skipped
    assert len(lines(tmp_path)) == 2
    (kept,) = history.read(now=NOW)
    assert (kept["id"], kept["state"]) == ("push-1", "succeeded")


def test_the_tray_pushing_one_commit_twice_keeps_both(tmp_path: Path) -> None:
    """Each push the hooks capture is its own (a force push back to an earlier commit): kept by id."""
    history = History(tmp_path)
    history.append(record(1), now=NOW)
    history.append(record(1, id="push-again"), now=NOW)
    history.append(record(1), now=NOW)  # the same id again (a resumed push settled twice): skipped
    assert [r["id"] for r in history.read(now=NOW)] == ["push-1", "push-again"]


# --- fluxmon history and report on a generated history ---------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, Any], ...]:
    return generate_history(3000, end=NOW).records


def test_the_report_figures_agree_with_the_records(generated: tuple[dict[str, Any], ...]) -> None:
    report = build_report(generated)
    states = [r["state"] for r in generated]
    assert report.pushes == 3000
    rated = sum(states.count(s) for s in ("succeeded", "failed", "timed-out"))
    assert report.success_rate == pytest.approx(states.count("succeeded") / rated)
    assert dict(report.outcomes)["failed"] == states.count("failed")
    deployed = sorted(r["elapsed_seconds"] for r in generated if r["state"] == "succeeded")
    assert report.deployed is not None
    assert report.deployed.p50 == pytest.approx(percentile(deployed, 0.5))
    assert report.deployed.max == deployed[-1]
    names = [t.name for t in report.objects]
    assert names[0] == "HelmRelease/apps/podinfo"  # last in the chain: the slowest
    assert [t.p95 for t in report.objects] == sorted((t.p95 for t in report.objects), reverse=True)
    assert {t.name for t in report.clusters} == {"staging", "production"}
    production = next(t for t in report.clusters if t.name == "production")
    staging = next(t for t in report.clusters if t.name == "staging")
    assert production.p50 > staging.p50  # the generator makes production slower
    assert {reason for reason, _ in report.failure_reasons} == {
        "BuildFailed",
        "HealthCheckFailed",
        "UpgradeFailed",
        "ReconciliationFailed",
    }
    assert sum(count for _, count in report.failure_reasons) >= states.count("failed")
    assert sum(day.pushes for day in report.days) == 3000
    assert len(report.days) in (30, 31)  # every day of the period
    first_week = report.days[:7]
    last_week = report.days[-8:-1]
    rate = [sum(d.failed for d in week) / sum(d.pushes for d in week) for week in (first_week, last_week)]
    assert rate[0] > rate[1]  # the generator's bad first week shows in the trend


def test_the_report_for_one_cluster_counts_that_cluster_alone(generated: tuple[dict[str, Any], ...]) -> None:
    chosen = select(generated, HistoryFilter(cluster="production", outcome="failed"))
    assert chosen
    assert all(any(c["context"] == "production" and c["state"] == "failed" for c in r["clusters"]) for r in chosen)
    report = build_report(chosen, cluster="production")
    assert dict(report.outcomes) == {"failed": len(chosen)}
    assert report.success_rate == 0.0


def test_the_terminal_summary(generated: tuple[dict[str, Any], ...]) -> None:
    text = "\n".join(report_lines(build_report(generated, scope="--since 30d")))
    assert re.search(r"^  3000 pushes: \d+ succeeded, .*; success rate \d+\.\d%$", text, re.MULTILINE)
    assert re.search(r"^  push to deployed: p50 \dm\d\ds, p95 \dm\d\ds, max \dm\d\ds over \d+$", text, re.MULTILINE)
    for heading in ("Per cluster", "Slowest objects", "Most frequent failure reasons", "Per day (the last 14)"):
        assert f"\n{heading}" in text


def test_the_html_page_has_its_charts_and_figures_and_nothing_to_fetch(generated: tuple[dict[str, Any], ...]) -> None:
    report = build_report(generated)
    page = report_html(report)
    for chart in CHART_IDS:
        figure = re.search(f'<figure id="{chart}"><svg .*?</svg>', page, re.DOTALL)
        assert figure, chart
        assert "<path" in figure.group(0) or "<rect" in figure.group(0)
    assert page.count("<svg") == len(CHART_IDS)
    figures = re.search(r'<div class="figures" id="figures">(.*?)</div></div>', page, re.DOTALL)
    assert figures
    assert '<div class="value">3000</div><div class="label">pushes</div>' in page
    success = f"{report.success_rate * 100:.1f}%" if report.success_rate is not None else ""
    assert f'<div class="value">{success}</div><div class="label">success rate</div>' in page
    assert "HelmRelease/apps/podinfo" in page
    assert "BuildFailed" in page
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\((?!#)", page)  # self-contained: nothing to fetch


def test_hostile_names_are_escaped_on_the_page() -> None:
    push = combine([replace(failed_snapshot(), id="evil", commit=COMMIT)])
    record = push_record(push)
    for resource in record["resources"]:
        if resource["name"] == APPS.name:
            resource["name"] = "<script>alert(1)</script>$x^2$"
            resource["reason"] = "<b>Bad</b>"
    record["failed"] = "Kustomization/flux-system/<script>alert(1)</script>$x^2$"
    page = report_html(build_report([migrate(record)]))
    assert "<script>" not in page
    assert "<b>Bad</b>" not in page
    assert "&lt;b&gt;Bad&lt;/b&gt;" in page


def test_a_history_row_is_one_safe_line() -> None:
    push = combine([replace(failed_snapshot(), context="dev", subject="fix\x1b[2J\nthings")])
    row = history_row(migrate(push_record(push)))
    assert row[1] == "failed"
    assert all("\n" not in cell and "\x1b" not in cell for cell in row)
    assert row[-1].startswith("Kustomization/flux-system/apps on dev: BuildFailed: kustomize build failed: yaml: line")
    fine = history_row(migrate(push_record(combine([replace(snapshot(), subject="fix\x1b[2J\nthings")]))))
    assert fine[-1] == "fix\N{REPLACEMENT CHARACTER}[2J things"


# --- the command line -------------------------------------------------------------------------------------------


def fluxmon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxmon", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    records = list(generate_history(3000, end=time.time()).records)
    records[-1] = {**records[-1], "subject": '=HYPERLINK("http://evil")'}
    write_history(state / "fluxmon", records)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(state),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LC_ALL": "C.UTF-8",
    }


def test_fluxmon_history_table_json_and_csv(home: dict[str, str]) -> None:
    table = fluxmon(home, "history", "--limit", "5")
    assert table.returncode == 0, table.stderr
    head, *rows = table.stdout.splitlines()
    assert head.split() == ["WHEN", "OUTCOME", "COMMIT", "BRANCH", "REMOTE", "CLUSTERS", "TOOK", "DETAIL"]
    assert len(rows) == 5
    assert "2995 older" in table.stderr
    as_json = fluxmon(home, "history", "--json", "--outcome", "failed", "--cluster", "production", "--since", "7d")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records
    assert all(r["state"] == "failed" and r["failed_on"] == "production" for r in records)
    assert all(r["started_at"] >= time.time() - 7 * 86400 - 60 for r in records)
    assert [r["started_at"] for r in records] == sorted((r["started_at"] for r in records), reverse=True)
    as_csv = fluxmon(home, "history", "--csv", "--repo", "acme/platform", "--branch", "ma*")
    rows_csv = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows_csv) == 1500
    assert {row["remote"] for row in rows_csv} == {"git@git.example.com:acme/platform.git"}
    assert rows_csv[0]["subject"] == '\'=HYPERLINK("http://evil")'  # a spreadsheet shows it, never runs it


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["history", "--since", "last tuesday"], "fluxmon: Cannot read input: 'last tuesday' is neither a duration"),
        (["history", "--outcome", "green"], "fluxmon: Cannot read input: unknown outcome 'green'; known: succeeded"),
        (["report", "--html", "/nonexistent/dir/r.html"], "fluxmon: Cannot read input: --html /nonexistent/dir/r.html"),
        (["history", "--limit", "0"], "fluxmon history: error: argument --limit: expected 1 or more, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(home: dict[str, str], args: list[str], expected: str) -> None:
    result = fluxmon(home, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(expected), result.stderr


def test_fluxmon_report_prints_and_writes_the_page(home: dict[str, str], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = fluxmon(home, "report", "--since", "30d", "--html", str(page))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Pushes ")
    assert "(--since 30d)" in result.stdout.splitlines()[0]
    assert f"wrote {page}" in result.stderr
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == len(CHART_IDS)


def test_a_history_that_cannot_be_written_never_changes_what_wait_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "not-a-folder"))
    record_outcome(combine([snapshot()]), config=Config(), follower="wait")  # raises nothing
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fluxmon: the outcome is not in the history: ")
    assert "not-a-folder" in line


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s")}
    assert fluxmon(env, "history").stdout == "No pushes in the history.\n"
    assert fluxmon(env, "report").stdout == "No pushes in the history.\n"


def test_the_report_as_a_picture(generated: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    """The page's charts in one PNG through matplotlib (a picture of a report without a browser; kept in
    $FLUXMON_SCREENSHOT_DIR when set), checked for the colours of its bars."""
    from PIL import Image

    folder = Path(os.environ.get("FLUXMON_SCREENSHOT_DIR") or tmp_path)
    path = folder / "report.png"
    report_png(build_report(generated), str(path))
    with Image.open(path) as image:
        assert image.size[0] > 800
        colours: set[object] = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    for bar in ("#1e7b34", "#b3141f", "#1d5fb4"):  # succeeded, failed, p50
        assert tuple(int(bar[i : i + 2], 16) for i in (1, 3, 5)) in colours, bar


def test_the_trays_report_is_the_last_30_days_in_a_private_folder(tmp_path: Path) -> None:
    now = time.time()
    write_history(tmp_path / "state", list(generate_history(400, days=60, end=now).records))
    path = tray_report(tmp_path / "state", Retention(), tmp_path / "run" / "reports", now=now)
    assert path == tmp_path / "run" / "reports" / "report.html"
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    page = path.read_text(encoding="utf-8")
    assert "the last 30 days" in page
    pushes = int(re.search(r'<div class="value">(\d+)</div><div class="label">pushes</div>', page).group(1))  # type: ignore[union-attr]
    assert 150 < pushes < 250  # about half of the 60 days' 400
    assert page.count("<svg") == len(CHART_IDS)
