"""Rendering sessions for a terminal: progress lines in the flux CLI's style, and the live tree of `watch`.

The flux CLI marks actions `►`, waiting `◎`, success `✔` and failure `✗`, and shortens revisions to 8 hex; people
who use Flux read that at a glance, so we write the same. Colour is used only on a TTY and never with NO_COLOR.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TextIO

from fluxmon.core.config import DEFAULT_VERBOSITY
from fluxmon.core.marks import ACTION, FAILURE, MARK_ANSI, PHASE_LOOKS, SUCCESS, WAITING
from fluxmon.core.objects import ObjectRef
from fluxmon.core.push import PushSnapshot
from fluxmon.core.revision import short_revision
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionState
from fluxmon.core.text import display_line, display_width
from fluxmon.core.verdict import Phase

NAME_COLUMN = 43
"""Where a tree row's phase column starts, whatever the row's depth, so the columns line up."""


def use_colour(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only for a person: a TTY, and no NO_COLOR (https://no-color.org)."""
    return stream.isatty() and not environ.get("NO_COLOR")


def paint(mark: str, text: str, colour: bool) -> str:
    """One line for the terminal: its control characters replaced (it holds git's and the cluster's text), then
    coloured."""
    text = display_line(text)
    return f"\033[{MARK_ANSI[mark]}m{text}\033[0m" if colour and MARK_ANSI.get(mark) else text


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
        if resource.ref == current.failed and current.state.final and (previous is None or not previous.state.final):
            continue  # the final line below says it: one failure, printed once
        lines.append(
            paint(PHASE_LOOKS[resource.phase].mark, f"{PHASE_LOOKS[resource.phase].mark} {_describe(resource)}", colour)
        )
    for note in current.notes:
        if previous is None or note not in previous.notes:
            lines.append(paint(ACTION, f"{ACTION} {note}", colour))
    if current.state.final and (previous is None or not previous.state.final):
        lines.append(final_line(current, colour=colour))
    return lines


def push_progress_lines(previous: PushSnapshot | None, current: PushSnapshot, *, colour: bool = False) -> list[str]:
    """`progress_lines` for a push: with one cluster exactly those; with several, each cluster's lines under its
    context's name, then the push's outcome once it has one."""
    if not current.several:
        return progress_lines(previous.first if previous else None, current.first, colour=colour)
    lines = []
    if previous is None:
        where = ", ".join(cluster.context for cluster in current.clusters)
        subject = current.subject or "no subject"
        text = f"{ACTION} following {current.short_commit} ({subject}) on {current.remote} {current.branch} in {where}"
        lines.append(paint(ACTION, text, colour))
    for cluster in current.clusters:
        before = previous.cluster(cluster.context) if previous else None
        changes = progress_lines(before, cluster, colour=False)[0 if before else 1 :]
        lines += [paint(line[:1], f"{line[:1]} {cluster.context}: {line[2:]}", colour) for line in changes]
    if current.state.final and (previous is None or not previous.state.final):
        lines.append(push_final_line(current, colour=colour))
    return lines


def push_final_line(push: PushSnapshot, *, colour: bool = False) -> str:
    """The push's outcome in one line; with several clusters, where it stands on each ("✗ main@1a2b3c4 failed on
    prod · deployed to dev (12.0s)")."""
    if not push.several:
        return final_line(push.first, colour=colour)
    mark = {SessionState.SUCCEEDED: SUCCESS, SessionState.FAILED: FAILURE}.get(push.state, WAITING)
    # Each cluster's own line (above) carries its error: this one says where the push stands, once.
    text = f"{mark} {push.branch}@{push.short_commit} {push.summary()} ({push.elapsed:.1f}s)"
    return paint(mark, text, colour)


def final_line(snapshot: SessionSnapshot, *, colour: bool = False, shown_above: bool = False) -> str:
    """The outcome in one line. `shown_above`: the failed object's row, with its error, is already on screen,
    so the line names the object and leaves the error to that row instead of printing it twice."""
    mark = {SessionState.SUCCEEDED: SUCCESS, SessionState.FAILED: FAILURE}.get(snapshot.state, WAITING)
    message = snapshot.message
    failed = snapshot.failed
    if shown_above and snapshot.state is SessionState.FAILED and failed is not None:
        reason = next((f": {r.reason}" for r in snapshot.resources if r.ref == failed and r.reason), "")
        message = f"{failed.kind} {failed.namespace}/{failed.name} failed{reason}, as shown above"
    return paint(mark, f"{mark} {message} ({snapshot.elapsed:.1f}s)", colour)


def _describe(resource: ResourceStatus) -> str:
    name = f"{resource.ref.kind}/{resource.ref.namespace}/{resource.ref.name}"
    revision = short_revision(resource.revision)
    if resource.phase is Phase.READY:
        return f"{name} ready at {revision}" if revision else f"{name} ready"
    if resource.phase is Phase.FAILED:
        return f"{name} failed: {resource.reason}: {resource.error}"
    detail = resource.message.strip().splitlines()[0] if resource.message.strip() else resource.reason
    return f"{name} {resource.phase.value.lower()}: {detail}"


def tree(snapshot: SessionSnapshot, *, verbosity: str = DEFAULT_VERBOSITY, colour: bool = False) -> str:
    """The session as a nested tree: a header, each source with the Kustomizations on it, each Kustomization
    with the HelmReleases it applies (upstream gates last), then a summary line.

    A row's "applied by" names the Kustomization that applies it; "depends on" is its `spec.dependsOn` alone.
    """
    lines = [
        display_line(f"{snapshot.short_commit} {snapshot.subject}".rstrip()),
        display_line(
            f"  {snapshot.remote} {snapshot.branch} · {snapshot.state.value} · {snapshot.elapsed:.1f}s · "
            f"{snapshot.count(*Phase)} resources"
        ),
        *_body(snapshot, verbosity=verbosity, colour=colour),
    ]
    return "\n".join(lines) + "\n"


def push_tree(push: PushSnapshot, *, verbosity: str = DEFAULT_VERBOSITY, colour: bool = False) -> str:
    """`tree` for a push: with one cluster exactly that; with several, a header for the push, then each cluster's
    tree under its context's name, then the push's outcome."""
    if not push.several:
        return tree(push.first, verbosity=verbosity, colour=colour)
    lines = [
        display_line(f"{push.short_commit} {push.subject}".rstrip()),
        display_line(f"  {push.remote} {push.branch} · {push.state.value} · {push.elapsed:.1f}s"),
        display_line(f"  {push.summary()}"),
    ]
    for cluster in push.clusters:
        lines.append(
            display_line(
                f"{cluster.context}: {cluster.state.value} · {cluster.elapsed:.1f}s · "
                f"{cluster.count(*Phase)} resources"
                + (f" · {cluster.cluster.problem}" if cluster.cluster.problem else "")
            )
        )
        lines += _body(cluster, verbosity=verbosity, colour=colour)
    if push.state.final:
        lines.append(push_final_line(push, colour=colour))
    return "\n".join(lines) + "\n"


def _body(snapshot: SessionSnapshot, *, verbosity: str, colour: bool) -> list[str]:
    """One cluster's tree rows, its counts, its outcome and its notes."""
    lines: list[str] = []
    children = _children(snapshot.resources)
    placed = {child.ref for below in children.values() for child in below}
    roots = [r for r in snapshot.resources if r.ref not in placed]

    def draw(resource: ResourceStatus, prefix: str, last: bool) -> None:
        lines.append(_row(resource, prefix + ("└─ " if last else "├─ "), verbosity, colour))
        inner = prefix + ("   " if last else "│  ")
        below = children.get(resource.ref, [])
        for detail in _details(resource, verbosity):
            lines.append(display_line(f"{inner}{'│' if below else ' '}    {detail}"))
        for index, child in enumerate(below):
            draw(child, inner, index == len(below) - 1)

    for index, resource in enumerate(roots):
        draw(resource, "", index == len(roots) - 1)
    ready = snapshot.count(Phase.READY)
    progressing = snapshot.count(Phase.PROGRESSING, Phase.WAITING)
    failed = snapshot.count(Phase.FAILED)
    pending = snapshot.count(Phase.PENDING, Phase.UNKNOWN, Phase.SUSPENDED)
    lines.append(f"{ready} ready · {progressing} progressing · {failed} failed · {pending} pending")
    if snapshot.state.final:
        lines.append(final_line(snapshot, colour=colour, shown_above=True))
    for note in snapshot.notes if verbosity != "minimal" else ():
        lines.append(display_line(f"note: {note}"))
    return lines


def _children(resources: tuple[ResourceStatus, ...]) -> dict[ObjectRef, list[ResourceStatus]]:
    """Who hangs under whom: Kustomizations under their source, HelmReleases under the Kustomization that applies
    them (else under their chart's source). Upstream gates hang nowhere."""
    present = {r.ref for r in resources}
    children: dict[ObjectRef, list[ResourceStatus]] = {}
    for resource in resources:
        parent = resource.parent
        if resource.role is Role.HELMRELEASE and resource.applied_by in present:
            parent = resource.applied_by
        if resource.role is not Role.UPSTREAM and parent in present and parent != resource.ref and parent is not None:
            children.setdefault(parent, []).append(resource)
    return children


def _details(resource: ResourceStatus, verbosity: str) -> list[str]:
    if verbosity == "minimal":
        return []
    relations = []
    if resource.applied_by is not None and resource.role is not Role.HELMRELEASE:
        relations.append(f"applied by {resource.applied_by.name}")
    if resource.depends_on:
        relations.append("depends on " + ", ".join(f"{ref.name} ({phase.value})" for ref, phase in resource.depends_on))
    details = [" · ".join(relations)] if relations else []
    if verbosity == "verbose" and resource.hint is not None:
        details.append(f"hint: {resource.hint.cause} ({resource.hint.docs})")
    return details


def _row(resource: ResourceStatus, branch: str, verbosity: str, colour: bool) -> str:
    mark = PHASE_LOOKS[resource.phase].mark
    seconds = sum(resource.seconds_in_phase.values())
    name = f"{resource.ref.kind}/{resource.ref.name}"
    if resource.role is Role.UPSTREAM:
        name += " (upstream)"
    if resource.phase is Phase.READY:
        detail = short_revision(resource.revision)
    elif resource.phase is Phase.FAILED:
        detail = f"{resource.reason}: {resource.error.strip().splitlines()[0] if resource.error.strip() else ''}"
    else:
        detail = resource.message.strip().splitlines()[0] if resource.message.strip() else resource.reason
    if verbosity == "minimal":
        detail = detail[:60]
    name = name.ljust(NAME_COLUMN - display_width(branch))
    text = f"{branch}{mark} {name} {resource.phase.value:<12} {seconds:6.1f}s  {detail}"
    return paint(mark, text, colour)


_SGR = re.compile("\033\\[[0-9;]*m")


def screen_rows(text: str, columns: int) -> int:
    """How many terminal rows `text` takes at `columns` wide: a line longer than the screen wraps onto more."""
    columns = max(columns, 1)
    rows = 0
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        width = display_width(_SGR.sub("", line))
        rows += max(1, -(-width // columns))
    return rows
