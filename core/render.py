"""Text renderings of verdicts for terminals and pipes: JSON lines for machines, a flux-style table for people."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fluxmon.core.objects import FluxObject
from fluxmon.core.revision import short_revision, truncate_hex
from fluxmon.core.text import display_line, display_width, json_text
from fluxmon.core.verdict import Verdict

TABLE_COLUMNS = ("NAMESPACE", "NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE")
"""`flux get` columns, with NAMESPACE as `-A` adds it; READY holds our phase, which says more than True/False."""
COLUMN_GAP = "   "


def verdict_record(obj: FluxObject, result: Verdict) -> dict[str, str]:
    """The stable JSON shape of one assessed object (documented in the README; scripts depend on it)."""
    return {
        "kind": obj.kind,
        "namespace": obj.ref.namespace,
        "name": obj.ref.name,
        "phase": result.phase.value,
        "reason": result.reason,
        "message": result.message,
        "revision": result.revision,
    }


def json_lines(rows: Iterable[tuple[FluxObject, Verdict]]) -> str:
    """One JSON object per line, newline-terminated."""
    return "".join(json_line(obj, result) for obj, result in rows)


def json_line(obj: FluxObject, result: Verdict) -> str:
    """One assessed object as a newline-terminated JSON line."""
    return json_text(verdict_record(obj, result)) + "\n"


def table(rows: Sequence[tuple[FluxObject, Verdict]]) -> str:
    """A left-aligned table in the flux CLI's style: `kustomization/apps`, and hex shortened to 8 digits in both the
    revision and the message, as `flux get` prints them."""
    return format_table([table_cells(obj, result) for obj, result in rows])


def table_cells(obj: FluxObject, result: Verdict) -> tuple[str, ...]:
    """One object's row of the table, as text ready to show: what `fluxmon assess` keeps of an object until the
    whole input is read and the columns' widths are known."""
    return tuple(
        display_line(cell)  # names, revisions and messages are the cluster's text
        for cell in (
            obj.ref.namespace,
            f"{obj.kind.lower()}/{obj.ref.name}",
            short_revision(result.revision),
            str(obj.suspended),
            result.phase.value,
            truncate_hex(one_line(result.message)),
        )
    )


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows of `table_cells` under the column headings, each column as wide as its widest cell."""
    cells = [TABLE_COLUMNS, *rows]
    widths = [max(display_width(row[column]) for row in cells) for column in range(len(TABLE_COLUMNS) - 1)]
    lines = [
        COLUMN_GAP.join(
            [*(cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def one_line(message: str) -> str:
    """Collapse a multi-line controller message (kustomize errors often are) onto one line."""
    return " ".join(message.split())
