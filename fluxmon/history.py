"""`fluxmon history` and `fluxmon report`: the pushes every follower recorded (the tray, `wait`, `watch`), read back.

The figures are computed in core/report.py; this module reads the user's history, applies the filters given on the
command line, and prints (or, for `report --html`, writes the page from fluxmon/reportpage.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fluxmon.core import paths
from fluxmon.core.config import load_config, parse_when
from fluxmon.core.errors import InputError
from fluxmon.core.report import (
    CSV_COLUMNS,
    HISTORY_COLUMNS,
    HistoryFilter,
    Report,
    build_report,
    check_outcome,
    csv_row,
    history_row,
    report_lines,
    select,
    table,
)
from fluxmon.core.store import History
from fluxmon.core.text import json_text
from fluxmon.exits import EXIT_OK

DEFAULT_ROWS = 50
"""Rows of the table when --limit is not given (--json and --csv give every push chosen)."""


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The filters `history` and `report` share."""
    parser.add_argument("--repo", metavar="TEXT", help="pushes whose remote URL or local path contains TEXT")
    parser.add_argument("--branch", metavar="GLOB", help="pushes to this branch or tag (a glob: 'release/*')")
    parser.add_argument(
        "--cluster", "--context", dest="cluster", metavar="CONTEXT", help="pushes followed on this context"
    )
    parser.add_argument("--outcome", metavar="STATE", help="succeeded, failed, timed-out, superseded, ...")
    parser.add_argument("--since", metavar="WHEN", help="a duration back from now (7d, 12h) or a date (2026-11-01)")
    parser.add_argument("--until", metavar="WHEN", help="pushes before this (same forms as --since)")


def run_history(args: argparse.Namespace) -> int:
    """`fluxmon history`: newest first, as a table, JSON Lines (the history's own records) or CSV."""
    chosen = list(reversed(_chosen(args)[0]))
    limit = args.limit if args.limit is not None else (None if args.json or args.csv else DEFAULT_ROWS)
    shown = chosen[:limit] if limit is not None else chosen
    if args.json:
        for record in shown:
            print(json_text(record))
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(record) for record in shown)
    elif not shown:
        print("No pushes in the history" + (" match" if chosen != shown or _any_filter(args) else "") + ".")
    else:
        width = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 0
        for line in table([history_row(record) for record in shown], HISTORY_COLUMNS, width=width):
            print(line)
        if len(shown) < len(chosen):
            print(f"({len(chosen) - len(shown)} older; --limit N or --since to see more)", file=sys.stderr)
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    """`fluxmon report`: the summary on stdout; `--html FILE` writes the page too."""
    records, scope = _chosen(args)
    report = build_report(records, cluster=args.cluster or "", scope=scope)
    for line in report_lines(report):
        print(line)
    if args.html:
        write_page(report, args.html)
        print(f"wrote {args.html}", file=sys.stderr)
    return EXIT_OK


def write_page(report: Report, path: Path) -> None:
    """The page, written whole or not at all, or one clear error."""
    from fluxmon.reportpage import write_page as write

    try:
        write(report, path.expanduser())
    except OSError as exc:
        raise InputError(f"--html {path}: cannot write it: {exc.strerror or exc}") from None


def _chosen(args: argparse.Namespace) -> tuple[list[Mapping[str, Any]], str]:
    """The history's pushes the filters choose, oldest first, and the filters as text (for the report's heading)."""
    now = time.time()
    try:
        chosen = HistoryFilter(
            repo=args.repo or "",
            branch=args.branch or "",
            cluster=args.cluster or "",
            outcome=check_outcome(args.outcome) if args.outcome else "",
            since=parse_when(args.since, now=now) if args.since else None,
            until=parse_when(args.until, now=now) if args.until else None,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    config = load_config()
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    history = History(paths.state_dir(), config.retention)
    records = history.read(now=now)
    if history.unreadable:
        print(f"fluxmon: skipped {history.unreadable} unreadable line(s) of {history.path}", file=sys.stderr)
    return select(records, chosen), _scope(args)


def _any_filter(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) for name in ("repo", "branch", "cluster", "outcome", "since", "until"))


def _scope(args: argparse.Namespace) -> str:
    given: Sequence[tuple[str, str | None]] = [
        ("repo", args.repo),
        ("branch", args.branch),
        ("cluster", args.cluster),
        ("outcome", args.outcome),
        ("since", args.since),
        ("until", args.until),
    ]
    return " ".join(f"--{name} {value}" for name, value in given if value)
