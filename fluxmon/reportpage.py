"""`fluxmon report --html`: the report as one self-contained page, its charts drawn by matplotlib as inline SVG.

Self-contained: no script, no stylesheet or font to fetch, so the page opens from a file, a mail or an artifact
store, offline, and shows the same years later. The figures come from core.report, the same as the terminal's.

Every text on the page is anyone's (object names, failure reasons, remote URLs): it is HTML-escaped, and in the
charts `$` is escaped so that matplotlib never reads it as mathtext. matplotlib is imported here only, and only
when a page is made: the other verbs (and the tray's start) do not pay for it.
"""

from __future__ import annotations

import html
import io
import re
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmon.core.config import Retention
from fluxmon.core.report import TOP, HistoryFilter, Report, Timing, build_report, percent, select, took, when
from fluxmon.core.spool import ensure_private_dir
from fluxmon.core.store import History
from fluxmon.core.text import display_line

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GREEN, RED, AMBER, GREY, BLUE = "#1e7b34", "#b3141f", "#9a6700", "#8c959f", "#1d5fb4"
CHART_IDS = ("trend", "deploy-time", "clusters", "slowest", "failure-reasons")
"""The charts a page has (each an <svg> in a <figure id=...>), in order; a chart with nothing to show is left out."""

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2328; margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
.scope { color: #59636e; margin-top: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; margin: 1.5em 0; }
.figure { border: 1px solid #d1d9e0; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.figure .value { font-size: 1.7em; font-weight: 600; } .figure .label { color: #59636e; font-size: .9em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .25em .8em; text-align: left; }
th { border-bottom: 1px solid #d1d9e0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f6f8fa; }
"""


TRAY_REPORT_DAYS = 30
"""The period of the tray's *Report…*: the last 30 days (`fluxmon report` chooses any)."""


def write_page(report: Report, path: Path) -> None:
    """The page written whole or not at all: a temp file beside it, renamed over it. Raises OSError."""
    page = report_html(report)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(page)
    try:
        Path(handle.name).chmod(0o644)
        Path(handle.name).replace(path)
    except OSError:
        Path(handle.name).unlink(missing_ok=True)
        raise


def tray_report(state_dir: Path, retention: Retention, folder: Path, *, now: float | None = None) -> Path:
    """The tray's *Report…*: the last TRAY_REPORT_DAYS of the history as a page in `folder` (private, the
    runtime folder); returns its path. Raises OSError or a FluxmonError."""
    now = time.time() if now is None else now
    records = select(History(state_dir, retention).read(now=now), HistoryFilter(since=now - TRAY_REPORT_DAYS * 86400))
    report = build_report(records, scope=f"the last {TRAY_REPORT_DAYS} days")
    path = ensure_private_dir(folder) / "report.html"
    write_page(report, path)
    return path


def report_html(report: Report, *, generated: datetime | None = None) -> str:
    """The whole page as text (UTF-8 when written)."""
    generated = generated or datetime.now().astimezone()
    title = "Flux push report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if not report.pushes or report.start is None or report.end is None:
        parts.append(f"<p>No pushes in the history{_e(' for ' + report.scope) if report.scope else ''}.</p>")
        return "\n".join([*parts, "</body></html>", ""])
    period = f"{when(report.start)} to {when(report.end)}"
    scope = f" · {report.scope}" if report.scope else ""
    parts.append(f'<p class="scope">{_e(period + scope)} · generated {_e(generated.strftime("%Y-%m-%d %H:%M"))}</p>')
    parts.append(_figures(report))
    parts.append("<h2>Outcomes per day</h2>")
    parts.append(_figure("trend", _trend_chart(report), "Pushes per day by outcome, and the success rate"))
    deployed = [day for day in report.days if day.p50 is not None]
    if deployed:
        parts.append(_figure("deploy-time", _deploy_time_chart(report), "p50 push-to-deployed per day"))
    if report.clusters:
        parts.append("<h2>Per cluster</h2>")
        parts.append(_figure("clusters", _timing_chart(report.clusters), "Push to deployed on each cluster"))
        parts.append(_timing_table(report.clusters))
    if report.objects:
        parts.append("<h2>Slowest objects</h2>")
        parts.append(
            _figure("slowest", _timing_chart(report.objects[:TOP]), "Push to Ready per Kustomization and HelmRelease")
        )
        parts.append(_timing_table(report.objects))
    if report.failure_reasons:
        parts.append("<h2>Failures</h2>")
        parts.append(
            _figure("failure-reasons", _count_chart(report.failure_reasons[:TOP], RED), "Most frequent reasons")
        )
        parts.append(_count_table("Reason", report.failure_reasons[:TOP]))
        parts.append(_count_table("Failing object", report.failing_objects[:TOP]))
    parts.append("<h2>Per day</h2>")
    parts.append(_days_table(report))
    parts.append(f"<p class='scope'>Repositories: {_e(', '.join(report.repositories))}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _e(text: str) -> str:
    return html.escape(display_line(text))


def _figures(report: Report) -> str:
    items = [
        (str(report.pushes), "pushes"),
        (percent(report.success_rate), "success rate"),
        (str(report.count("failed")), "failed"),
        (str(report.count("timed-out")), "timed out"),
    ]
    if report.deployed is not None:
        items += [(took(report.deployed.p50), "p50 push to deployed"), (took(report.deployed.p95), "p95")]
    cells = "".join(
        f'<div class="figure"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'
        for value, label in items
    )
    return f'<div class="figures" id="figures">{cells}</div>'


def _figure(name: str, svg: str, caption: str) -> str:
    return f'<figure id="{name}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _timing_table(timings: Sequence[Timing]) -> str:
    rows = "".join(
        f"<tr><td>{_e(t.name)}</td><td class=n>{t.count}</td><td class=n>{_e(took(t.p50))}</td>"
        f"<td class=n>{_e(took(t.p95))}</td><td class=n>{_e(took(t.max))}</td></tr>"
        for t in timings
    )
    return f"<table><tr><th>Name</th><th>Deploys</th><th>p50</th><th>p95</th><th>Max</th></tr>{rows}</table>"


def _count_table(heading: str, counts: Sequence[tuple[str, int]]) -> str:
    rows = "".join(f"<tr><td>{_e(name)}</td><td class=n>{count}</td></tr>" for name, count in counts)
    return f"<table><tr><th>{_e(heading)}</th><th>Count</th></tr>{rows}</table>"


def _days_table(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{_e(d.date)}</td><td class=n>{d.pushes}</td><td class=n>{d.succeeded}</td><td class=n>{d.failed}"
        f"</td><td class=n>{d.timed_out}</td><td class=n>{d.others}</td>"
        f"<td class=n>{_e(percent(d.success_rate))}</td><td class=n>{_e(took(d.p50))}</td></tr>"
        for d in reversed(report.days)
    )
    head = "".join(
        f"<th>{h}</th>" for h in ("Day", "Pushes", "Succeeded", "Failed", "Timed out", "Other", "Rate", "p50")
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


# --- charts ------------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _svg(figure: Figure) -> str:
    """The figure as an <svg> element to inline: text kept as text (smaller, selectable), ids made repeatable."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fluxmon"}):
        figure.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg") :]


def _days(dates: Sequence[str]) -> Any:
    """Days for a date axis: matplotlib takes datetimes, though its type hints do not say so (hence Any)."""
    return [datetime.fromisoformat(date) for date in dates]


def _label(text: str) -> str:
    """A label matplotlib shows as it is: one line, and `$` not taken for mathtext."""
    return re.sub(r"\$", r"\\$", display_line(text))


def _trend_chart(report: Report) -> str:
    figure, axes = _new_figure(10, 3.4)
    days = _stacked_days(axes, report, width=0.8)
    axes.set_ylabel("pushes")
    rate = axes.twinx()
    rate.plot(
        days,
        [d.success_rate * 100 if d.success_rate is not None else float("nan") for d in report.days],
        color=BLUE,
        marker=".",
        label="success rate",
    )
    rate.set_ylim(0, 105)
    rate.set_ylabel("success rate (%)")
    rate.spines[["top"]].set_visible(False)
    handles = axes.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), ncols=5, fontsize="small", frameon=False)
    figure.autofmt_xdate()
    return _svg(figure)


def _deploy_time_chart(report: Report) -> str:
    figure, axes = _new_figure(10, 2.8)
    deployed = [d for d in report.days if d.p50 is not None]
    axes.plot(_days([d.date for d in deployed]), [d.p50 or 0.0 for d in deployed], color=BLUE, marker=".")
    axes.set_ylabel("p50 push to deployed (s)")
    axes.set_ylim(bottom=0)
    figure.autofmt_xdate()
    return _svg(figure)


def _timing_chart(timings: Sequence[Timing]) -> str:
    shown = list(reversed(timings))  # slowest on top
    figure, axes = _new_figure(10, 0.9 + 0.42 * len(shown))
    names = [_label(t.name) for t in shown]
    axes.barh(names, [t.p95 for t in shown], color="#b6d3f2", label="p95")
    axes.barh(names, [t.p50 for t in shown], color=BLUE, height=0.5, label="p50")
    axes.set_xlabel("seconds from the push")
    axes.legend(loc="lower right", fontsize="small", frameon=False)
    return _svg(figure)


def _stacked_days(axes: Any, report: Report, **bar: Any) -> Any:
    """Each day's pushes as one bar stacked by outcome (the page's trend and its picture draw the same); returns
    the days, for what is drawn over them."""
    days = _days([d.date for d in report.days])
    bottom = [0] * len(days)
    for label, values, colour in (
        ("succeeded", [d.succeeded for d in report.days], GREEN),
        ("failed", [d.failed for d in report.days], RED),
        ("timed out", [d.timed_out for d in report.days], AMBER),
        ("other", [d.others for d in report.days], GREY),
    ):
        axes.bar(days, values, bottom=bottom, color=colour, label=label, **bar)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    return days


def _count_chart(counts: Sequence[tuple[str, int]], colour: str) -> str:
    shown = list(reversed(counts))
    figure, axes = _new_figure(10, 0.9 + 0.42 * len(shown))
    axes.barh([_label(name) for name, _ in shown], [count for _, count in shown], color=colour)
    axes.set_xlabel("failed pushes")
    return _svg(figure)


def report_png(report: Report, path: str) -> None:
    """The page's charts in one PNG (the trend, the clusters, the slowest objects, the failure reasons): a picture
    of the report where no browser is at hand to take one of the page."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 12), layout="constrained")
    trend, clusters, slowest, reasons = figure.subplots(4, 1, height_ratios=(3, 1.5, 2, 2))
    title = f"Flux push report: {report.pushes} pushes, success rate {percent(report.success_rate)}"
    if report.deployed is not None:
        title += f", push to deployed p50 {took(report.deployed.p50)} p95 {took(report.deployed.p95)}"
    figure.suptitle(_label(title))
    _stacked_days(trend, report)
    trend.legend(ncols=4, fontsize="small", frameon=False, loc="lower left", bbox_to_anchor=(0, 1))
    trend.tick_params(axis="x", labelrotation=30)
    trend.set_ylabel("pushes per day")
    for axes, timings in ((clusters, report.clusters), (slowest, report.objects[:TOP])):
        shown = list(reversed(timings))
        names = [_label(t.name) for t in shown]
        axes.barh(names, [t.p95 for t in shown], color="#b6d3f2", label="p95")
        axes.barh(names, [t.p50 for t in shown], color=BLUE, height=0.5, label="p50")
        axes.legend(fontsize="small", frameon=False, loc="lower right")
        axes.set_xlabel("seconds from the push")
    shown_reasons = list(reversed(report.failure_reasons[:TOP]))
    reasons.barh([_label(n) for n, _ in shown_reasons], [c for _, c in shown_reasons], color=RED)
    reasons.set_xlabel("failed pushes by reason")
    figure.savefig(path, format="png", dpi=90)
