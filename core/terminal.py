"""Rendering sessions for a terminal: progress lines in the flux CLI's style, and the live tree of `watch`.

The flux CLI marks actions `►`, waiting `◎`, success `✔` and failure `✗`, and shortens revisions to 8 hex; people
who use Flux read that at a glance, so we write the same. Colour is used only on a TTY and never with NO_COLOR.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from fluxmon.core.revision import short_revision
from fluxmon.core.session import ResourceStatus, SessionSnapshot, SessionState
from fluxmon.core.verdict import Phase

ACTION, WAITING, SUCCESS, FAILURE = "►", "◎", "✔", "✗"
VERBOSITIES = ("minimal", "normal", "verbose")

_MARKS = {
    Phase.READY: SUCCESS,
    Phase.FAILED: FAILURE,
    Phase.PROGRESSING: ACTION,
    Phase.WAITING: WAITING,
    Phase.PENDING: WAITING,
    Phase.SUSPENDED: WAITING,
    Phase.UNKNOWN: WAITING,
}
_COLOURS = {SUCCESS: "32", FAILURE: "31", ACTION: "36", WAITING: "33"}


def use_colour(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only for a person: a TTY, and no NO_COLOR (https://no-color.org)."""
    return stream.isatty() and not environ.get("NO_COLOR")


def paint(mark: str, text: str, colour: bool) -> str:
    return f"\033[{_COLOURS[mark]}m{text}\033[0m" if colour and mark in _COLOURS else text


def progress_lines(previous: SessionSnapshot | None, current: SessionSnapshot, *, colour: bool = False) -> list[str]:
    """What changed since `previous`, one line per event, as `flux reconcile` would print it."""
    lines = []
    if previous is None:
        subject = current.subject or "no subject"
        text = f"{ACTION} following {current.short_commit} ({subject}) on {current.remote} {current.branch}"
        lines.append(paint(ACTION, text, colour))
    before = {r.ref: r for r in previous.resources} if previous else {}
    for resource in current.resources:
        old = before.get(resource.ref)
        if old is not None and (old.phase, old.reason, old.message) == (
            resource.phase,
            resource.reason,
            resource.message,
        ):
            continue
        if old is None and resource.phase is Phase.PENDING:
            continue
        lines.append(paint(_MARKS[resource.phase], f"{_MARKS[resource.phase]} {_describe(resource)}", colour))
    for note in current.notes:
        if previous is None or note not in previous.notes:
            lines.append(paint(ACTION, f"{ACTION} {note}", colour))
    if current.state.final and (previous is None or not previous.state.final):
        lines.append(final_line(current, colour=colour))
    return lines


def final_line(snapshot: SessionSnapshot, *, colour: bool = False) -> str:
    mark = {SessionState.SUCCEEDED: SUCCESS, SessionState.FAILED: FAILURE}.get(snapshot.state, WAITING)
    return paint(mark, f"{mark} {snapshot.message} ({snapshot.elapsed:.1f}s)", colour)


def _describe(resource: ResourceStatus) -> str:
    name = f"{resource.ref.kind}/{resource.ref.namespace}/{resource.ref.name}"
    revision = short_revision(resource.revision)
    if resource.phase is Phase.READY:
        return f"{name} ready at {revision}" if revision else f"{name} ready"
    if resource.phase is Phase.FAILED:
        return f"{name} failed: {resource.reason}: {resource.error}"
    detail = resource.message.strip().splitlines()[0] if resource.message.strip() else resource.reason
    return f"{name} {resource.phase.value.lower()}: {detail}"


def tree(snapshot: SessionSnapshot, *, verbosity: str = "normal", colour: bool = False) -> str:
    """The session as a tree: a header, sources -> Kustomizations -> HelmReleases, then a summary line."""
    lines = [
        f"{snapshot.short_commit} {snapshot.subject}".rstrip(),
        f"  {snapshot.remote} {snapshot.branch} · {snapshot.state.value} · {snapshot.elapsed:.1f}s · "
        f"{snapshot.count(*Phase)} resources",
    ]
    rows = snapshot.resources  # already ordered: sources, Kustomizations, HelmReleases, upstream gates
    for index, resource in enumerate(rows):
        last = index == len(rows) - 1
        indent = "   " if last else "│  "
        lines.append(_row(resource, "└─ " if last else "├─ ", verbosity, colour))
        if verbosity != "minimal" and resource.depends_on:
            deps = ", ".join(f"{ref.name} ({phase.value})" for ref, phase in resource.depends_on)
            lines.append(f"{indent}   depends on {deps}")
        if verbosity == "verbose" and resource.hint is not None:
            lines.append(f"{indent}   hint: {resource.hint.cause} ({resource.hint.docs})")
    ready = snapshot.count(Phase.READY)
    progressing = snapshot.count(Phase.PROGRESSING, Phase.WAITING)
    failed = snapshot.count(Phase.FAILED)
    pending = snapshot.count(Phase.PENDING, Phase.UNKNOWN, Phase.SUSPENDED)
    lines.append(f"{ready} ready · {progressing} progressing · {failed} failed · {pending} pending")
    if snapshot.state.final:
        lines.append(final_line(snapshot, colour=colour))
    for note in snapshot.notes if verbosity != "minimal" else ():
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def _row(resource: ResourceStatus, branch: str, verbosity: str, colour: bool) -> str:
    mark = _MARKS[resource.phase]
    seconds = sum(resource.seconds_in_phase.values())
    name = f"{resource.ref.kind}/{resource.ref.name}"
    if resource.role == "upstream":
        name += " (upstream)"
    if resource.phase is Phase.READY:
        detail = short_revision(resource.revision)
    elif resource.phase is Phase.FAILED:
        detail = f"{resource.reason}: {resource.error.strip().splitlines()[0] if resource.error.strip() else ''}"
    else:
        detail = resource.message.strip().splitlines()[0] if resource.message.strip() else resource.reason
    if verbosity == "minimal":
        detail = detail[:60]
    text = f"{branch}{mark} {name:<40} {resource.phase.value:<12} {seconds:6.1f}s  {detail}"
    return paint(mark, text, colour)
