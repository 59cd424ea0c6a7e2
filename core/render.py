"""Text renderings of verdicts for terminals and pipes: JSON lines for machines, a flux-style table for people."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from fluxmon.core.objects import FluxObject
from fluxmon.core.revision import short_revision, truncate_hex
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
    return "".join(json.dumps(verdict_record(obj, result), ensure_ascii=False) + "\n" for obj, result in rows)


def table(rows: Sequence[tuple[FluxObject, Verdict]]) -> str:
    """A left-aligned table in the flux CLI's style: `kustomization/apps`, and hex shortened to 8 digits in both the
    revision and the message, as `flux get` prints them."""
    cells = [TABLE_COLUMNS] + [
        (
            obj.ref.namespace,
            f"{obj.kind.lower()}/{obj.ref.name}",
            short_revision(result.revision),
            str(obj.suspended),
            result.phase.value,
            truncate_hex(one_line(result.message)),
        )
        for obj, result in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(TABLE_COLUMNS) - 1)]
    lines = [
        COLUMN_GAP.join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def one_line(message: str) -> str:
    """Collapse a multi-line controller message (kustomize errors often are) onto one line."""
    return " ".join(message.split())
