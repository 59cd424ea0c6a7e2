"""What the history says: `fluxmon history` (filters, table rows, CSV) and `fluxmon report` (rates, times, trends).

Pure functions over history records (core/store.py's shape, migrated to the current version), so that the
terminal, the HTML page, the tray and the tests compute the same figures from the same records.

The figures, and what each counts:
    success rate        succeeded / (succeeded + failed + timed out): the pushes that had to deploy and did.
                        Superseded, cancelled and not-followed pushes are counted apart, not in the rate.
    push-to-deployed    per Kustomization and HelmRelease: seconds from the push until it was Ready at the
                        commit (`ready_after_seconds`), in every push where it got there; per cluster: until
                        every object there was (the cluster's own session succeeded); per push: until the push
                        was deployed everywhere. Each as p50, p95 and the maximum.
    slowest objects     the objects with the highest p95 push-to-deployed.
    failure reasons     the reason of each object that failed (BuildFailed, HealthCheckFailed...), counted once
                        per push and object; the failing objects likewise.
    trend per day       per local day of the push: pushes, succeeded, failed, others, the success rate and the p50
                        push-to-deployed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from fnmatch import fnmatchcase
from typing import Any

from fluxmon.core.revision import short_sha
from fluxmon.core.session import SessionState
from fluxmon.core.text import display_line, display_width

Record = Mapping[str, Any]
RATED = ("succeeded", "failed", "timed-out")
"""The outcomes the success rate is taken over."""
DEPLOYING_KINDS = ("Kustomization", "HelmRelease")
TOP = 10
"""How many slowest objects, failure reasons and failing objects a report lists."""


# --- which records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryFilter:
    """Which pushes: every field left empty matches all."""

    repo: str = ""
    """Text in the remote URL or the local repository path (`acme/fleet`), case-insensitive."""
    branch: str = ""
    """The branch or tag, or a glob over it (`release/*`)."""
    cluster: str = ""
    """A kubeconfig context the push was followed on; its figures are that cluster's alone."""
    outcome: str = ""
    """A final state: succeeded, failed, timed-out, superseded, cancelled, not-deployed."""
    since: float | None = None
    """Pushes from this time (epoch seconds) on."""
    until: float | None = None
    """Pushes before this time."""

    def matches(self, record: Record) -> bool:
        repo = self.repo.lower()
        where = f"{record.get('remote', '')}\n{record.get('repo', '')}".lower()
        if repo and repo not in where:
            return False
        if self.branch and not fnmatchcase(str(record.get("branch", "")), self.branch):
            return False
        if self.cluster and self.cluster not in contexts(record):
            return False
        if self.outcome and outcome(record, self.cluster) != self.outcome:
            return False
        started = float(record.get("started_at") or 0)
        if self.since is not None and started < self.since:
            return False
        return self.until is None or started < self.until


OUTCOMES = tuple(state.value for state in SessionState if state.final)


def check_outcome(value: str) -> str:
    """The outcome, if it is one; raises ValueError naming the known ones."""
    if value not in OUTCOMES:
        raise ValueError(f"unknown outcome {value!r}; known: {', '.join(OUTCOMES)}")
    return value


def contexts(record: Record) -> list[str]:
    return [str(cluster.get("context", "")) for cluster in record.get("clusters", ())]


def outcome(record: Record, cluster: str = "") -> str:
    """The push's outcome, or with `cluster` that cluster's own."""
    if cluster:
        for each in record.get("clusters", ()):
            if each.get("context") == cluster:
                return str(each.get("state", ""))
    return str(record.get("state", ""))


def select(records: Iterable[Record], chosen: HistoryFilter) -> list[Record]:
    return [record for record in records if chosen.matches(record)]


# --- fluxmon history -------------------------------------------------------------------------------------------

HISTORY_COLUMNS = ("WHEN", "OUTCOME", "COMMIT", "BRANCH", "REMOTE", "CLUSTERS", "TOOK", "DETAIL")
CSV_COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "outcome",
    "commit",
    "branch",
    "remote",
    "repo",
    "subject",
    "clusters",
    "elapsed_seconds",
    "failed",
    "failed_on",
    "message",
    "follower",
)


def when(seconds: float, zone: tzinfo | None = None) -> str:
    return datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M")


def took(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`: short enough for a table column."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _clusters_cell(record: Record) -> str:
    clusters = record.get("clusters", ())
    if len(clusters) <= 1 and not any(c.get("context") for c in clusters):
        return "-"
    return " ".join(f"{c.get('context') or 'current'}={c.get('state')}" for c in clusters)


def _detail(record: Record) -> str:
    """What failed, where and why (`Kustomization/flux-system/apps on prod: BuildFailed: ...`), else the subject."""
    if record.get("failed"):
        where = record.get("failed_on") or ""
        culprit = next(
            (
                r
                for r in record.get("resources", ())
                if object_name(r) == record["failed"] and r.get("context", "") == where and r.get("phase") == "Failed"
            ),
            None,
        )
        why = f"{culprit.get('reason')}: {culprit.get('error') or culprit.get('message')}" if culprit else ""
        return f"{record['failed']}{f' on {where}' if where else ''}: {why or record.get('message', '')}"
    return str(record.get("subject") or record.get("message") or "")


def history_row(record: Record, zone: tzinfo | None = None) -> tuple[str, ...]:
    """One push as the table's cells, each on one line and safe to show (git's and the cluster's text)."""
    cells = (
        when(float(record.get("started_at") or 0), zone),
        str(record.get("state", "")),
        short_sha(str(record.get("commit", ""))),
        str(record.get("branch", "")),
        str(record.get("remote", "")),
        _clusters_cell(record),
        took(record.get("elapsed_seconds")),
        " · ".join(part for part in (_detail(record), commands_mark(record)) if part),
    )
    return tuple(display_line(cell) for cell in cells)


_COMMAND_ENDS = {"not-found": "not found", "not-executable": "not executable", "timed-out": "timed out",
                 "cut-short": "cut short", "cannot-start": "could not start", "not-configured": "not run"}  # fmt: skip


def _command_end(command: Record) -> str:
    result = str(command.get("result"))
    return f"exit {command.get('exit_status')}" if result == "exited" else _COMMAND_ENDS.get(result, result)


def commands_mark(record: Record) -> str:
    """The push's commands on outcome in a few words: `commands: 2 ok`, or each that did not exit 0 and how."""
    commands = record.get("commands") or ()
    if not commands:
        return ""
    bad = [f"{c.get('command')} {_command_end(c)}" for c in commands if _command_end(c) != "exit 0"]
    return f"commands: {', '.join(bad)}" if bad else f"commands: {len(commands)} ok"


def table(rows: Sequence[Sequence[str]], header: Sequence[str], *, width: int = 0) -> list[str]:
    """Columns padded to their widest cell (by terminal columns); the last is cut to `width` when it is given."""
    widths = [max(display_width(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        line = "  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(row, widths, strict=False))
        line = f"{line}  {row[-1]}" if len(row) > 1 else row[-1]
        if width and display_width(line) > width:
            line = _cut(line, width)
        lines.append(line.rstrip())
    return lines


def _cut(text: str, width: int) -> str:
    out, used = [], 0
    for char in text:
        used += display_width(char)
        if used > width - 1:
            break
        out.append(char)
    return "".join(out) + "…"


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text, on one line: anyone's text (a commit subject) starting with `=`, `+`, `-`
    or `@` would be a formula there, so it gets a leading `'` (OWASP's advice for CSV injection)."""
    text = "" if value is None else display_line(str(value))  # printed to a terminal too: no escape codes
    return f"'{text}" if text.startswith(_FORMULA) else text


def csv_row(record: Record) -> list[str]:
    def iso(value: Any) -> str:
        return datetime.fromtimestamp(float(value)).astimezone().isoformat(timespec="seconds") if value else ""

    values = {
        **{column: record.get(column) for column in CSV_COLUMNS},
        "started_at": iso(record.get("started_at")),
        "ended_at": iso(record.get("ended_at")),
        "outcome": record.get("state"),
        "clusters": ";".join(f"{c.get('context')}={c.get('state')}" for c in record.get("clusters", ())),
    }
    return [csv_cell(values[column]) for column in CSV_COLUMNS]


# --- fluxmon report --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Timing:
    """Push-to-deployed seconds of one thing (an object, a cluster, the pushes), over the pushes that deployed."""

    name: str
    count: int
    p50: float
    p95: float
    max: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Day:
    date: str
    """The local day, YYYY-MM-DD."""
    pushes: int
    succeeded: int
    failed: int
    timed_out: int
    p50: float | None
    """The day's p50 push-to-deployed (None: nothing deployed that day)."""

    @property
    def others(self) -> int:
        return self.pushes - self.succeeded - self.failed - self.timed_out

    @property
    def success_rate(self) -> float | None:
        rated = self.succeeded + self.failed + self.timed_out
        return self.succeeded / rated if rated else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """The figures over a period; `fluxmon report` prints them, `--html` draws them."""

    start: float | None
    """The first push's time (None: no pushes)."""
    end: float | None
    pushes: int
    outcomes: tuple[tuple[str, int], ...]
    """Each final state with its count, most frequent first."""
    success_rate: float | None
    deployed: Timing | None
    """The pushes' own push-to-deployed (everywhere), over those that succeeded."""
    objects: tuple[Timing, ...]
    """Per Kustomization and HelmRelease (`Kind/namespace/name`), slowest (p95) first."""
    clusters: tuple[Timing, ...]
    """Per cluster (context), slowest first; none when every push was followed on the current context alone."""
    failure_reasons: tuple[tuple[str, int], ...]
    failing_objects: tuple[tuple[str, int], ...]
    days: tuple[Day, ...]
    repositories: tuple[str, ...]
    """The remotes the period's pushes went to."""
    scope: str = ""
    """What was chosen (`--repo acme/fleet --since 7d`), for the heading."""

    def count(self, state: str) -> int:
        return dict(self.outcomes).get(state, 0)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile by linear interpolation between the closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timing(name: str, values: Sequence[float]) -> Timing:
    return Timing(
        name=name, count=len(values), p50=percentile(values, 0.5), p95=percentile(values, 0.95), max=max(values)
    )


def object_name(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('kind')}/{resource.get('namespace')}/{resource.get('name')}"


def build_report(
    records: Sequence[Record], *, cluster: str = "", zone: tzinfo | None = None, scope: str = ""
) -> Report:
    """The report over `records` (already chosen); with `cluster`, objects and times are that cluster's alone."""
    outcomes: Counter[str] = Counter()
    per_object: dict[str, list[float]] = defaultdict(list)
    per_cluster: dict[str, list[float]] = defaultdict(list)
    overall: list[float] = []
    reasons: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    days: dict[str, list[Record]] = defaultdict(list)
    day_times: dict[str, list[float]] = defaultdict(list)
    several = any(any(c.get("context") for c in record.get("clusters", ())) for record in records)
    for record in records:
        state = outcome(record, cluster)
        outcomes[state] += 1
        day = datetime.fromtimestamp(float(record.get("started_at") or 0), zone).date().isoformat()
        days[day].append(record)
        seconds = _deployed_after(record, cluster)
        if state == "succeeded" and seconds is not None:
            overall.append(seconds)
            day_times[day].append(seconds)
        for each in record.get("clusters", ()):
            context = str(each.get("context", ""))
            if (cluster and context != cluster) or each.get("state") != "succeeded":
                continue
            if several and isinstance(each.get("elapsed_seconds"), (int, float)):
                per_cluster[context or "current"].append(float(each["elapsed_seconds"]))
        seen: set[str] = set()
        for resource in record.get("resources", ()):
            if cluster and resource.get("context", "") != cluster:
                continue
            if resource.get("kind") not in DEPLOYING_KINDS or resource.get("role") == "upstream":
                continue
            name = object_name(resource)
            after = resource.get("ready_after_seconds")
            if resource.get("phase") == "Ready" and isinstance(after, (int, float)) and after >= 0:
                per_object[name].append(float(after))
            if resource.get("phase") == "Failed" and name not in seen:
                seen.add(name)
                reasons[str(resource.get("reason") or "unknown")] += 1
                failing[name] += 1
    ordered_days = sorted(days)
    if ordered_days:
        # Every day of the period, the quiet ones too: a gap in a trend is a fact, not a missing bar.
        first, last = datetime.fromisoformat(ordered_days[0]), datetime.fromisoformat(ordered_days[-1])
        ordered_days = [(first + timedelta(days=n)).date().isoformat() for n in range((last - first).days + 1)]
    rated = sum(outcomes[state] for state in RATED)
    starts = [float(record.get("started_at") or 0) for record in records]
    return Report(
        start=min(starts) if starts else None,
        end=max(starts) if starts else None,
        pushes=len(records),
        outcomes=tuple(outcomes.most_common()),
        success_rate=outcomes["succeeded"] / rated if rated else None,
        deployed=timing("every push", overall) if overall else None,
        objects=_slowest_first(per_object),
        clusters=_slowest_first(per_cluster),
        failure_reasons=tuple(reasons.most_common()),
        failing_objects=tuple(failing.most_common()),
        days=tuple(_day(day, days.get(day, []), day_times.get(day, []), cluster) for day in ordered_days),
        repositories=tuple(sorted({str(record.get("remote", "")) for record in records})),
        scope=scope,
    )


def _slowest_first(values: Mapping[str, list[float]]) -> tuple[Timing, ...]:
    return tuple(sorted((timing(name, v) for name, v in values.items()), key=lambda t: (-t.p95, t.name)))


def _deployed_after(record: Record, cluster: str) -> float | None:
    if cluster:
        for each in record.get("clusters", ()):
            if each.get("context") == cluster and isinstance(each.get("elapsed_seconds"), (int, float)):
                return float(each["elapsed_seconds"])
        return None
    value = record.get("elapsed_seconds")
    return float(value) if isinstance(value, (int, float)) else None


def _day(day: str, records: Sequence[Record], times: Sequence[float], cluster: str) -> Day:
    states = Counter(outcome(record, cluster) for record in records)
    return Day(
        date=day,
        pushes=len(records),
        succeeded=states["succeeded"],
        failed=states["failed"],
        timed_out=states["timed-out"],
        p50=percentile(times, 0.5) if times else None,
    )


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def report_lines(report: Report, zone: tzinfo | None = None) -> list[str]:
    """The terminal summary: the period, the outcomes, the times, the slowest and the failures, the last days."""
    if not report.pushes or report.start is None or report.end is None:
        return [f"No pushes in the history{' for ' + report.scope if report.scope else ''}."]
    lines = [
        f"Pushes {when(report.start, zone)} to {when(report.end, zone)}"
        + (f" ({report.scope})" if report.scope else ""),
        f"  {report.pushes} pushes: "
        + ", ".join(f"{count} {state}" for state, count in report.outcomes)
        + f"; success rate {percent(report.success_rate)}",
    ]
    if report.deployed is not None:
        d = report.deployed
        lines.append(f"  push to deployed: p50 {took(d.p50)}, p95 {took(d.p95)}, max {took(d.max)} over {d.count}")
    if report.clusters:
        lines += ["", "Per cluster (push to deployed there)"]
        lines += _timing_table(report.clusters)
    if report.objects:
        lines += ["", f"Slowest objects (push to Ready, by p95; {len(report.objects)} followed)"]
        lines += _timing_table(report.objects[:TOP])
    if report.failure_reasons:
        lines += ["", "Most frequent failure reasons"]
        lines += [f"  {count:>5}  {reason}" for reason, count in report.failure_reasons[:TOP]]
        lines += ["", "Most frequently failing objects"]
        lines += [f"  {count:>5}  {name}" for name, count in report.failing_objects[:TOP]]
    lines += ["", "Per day (the last 14)"]
    rows = [
        (day.date, str(day.pushes), str(day.succeeded), str(day.failed), str(day.others), percent(day.success_rate),
         took(day.p50))
        for day in report.days[-14:]
    ]  # fmt: skip
    lines += [f"  {line}" for line in table(rows, ("DAY", "PUSHES", "OK", "FAILED", "OTHER", "RATE", "P50"))]
    return [display_line(line) for line in lines]


def _timing_table(timings: Sequence[Timing]) -> list[str]:
    rows = [(t.name, str(t.count), took(t.p50), took(t.p95), took(t.max)) for t in timings]
    return [f"  {line}" for line in table(rows, ("NAME", "DEPLOYS", "P50", "P95", "MAX"))]
