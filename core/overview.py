"""What the desktop shows, decided without a desktop: the tray state, its tooltip and menu lines, and notifications.

The tray (tray/) only draws what these pure functions return, so every rule here is tested without threads,
a display or a bus. They take pushes (core.push): a push is followed on every configured cluster, and its state
is already the worst across them (failed as soon as one cluster fails). With one cluster, everything reads as it
always did; with several, the texts name the clusters.

- `overview()`: the newest push per remote and branch counts, and the worst of them wins the icon. A failure
  stays red until a newer push to that branch ends, or until Flux no longer follows that branch (no push could
  ever fix it then); a paused tray shows "paused" unless something is failing. Settings that could not be
  applied (an invalid config file) need attention, and the tooltip says why. A cluster in trouble (unreachable,
  forbidden...) shows, named by its context when there are several.
- `notification_for()`: one notification per push outcome (not per cluster), for final outcomes only, never
  while paused; failures are critical and name the cluster. The body is markup-escaped (servers such as dunst
  render it) and redacted. A success that follows failures on its branch says "fixed" and closes their
  notifications (`failures_fixed_by()`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath

from fluxmon.core.config import NOTIFY_OUTCOMES
from fluxmon.core.health import ClusterHealth
from fluxmon.core.marks import STATE_LOOKS, TrayState
from fluxmon.core.push import PushSnapshot, cluster_summary
from fluxmon.core.redact import redact_text
from fluxmon.core.render import one_line
from fluxmon.core.session import Role, SessionSnapshot, SessionState
from fluxmon.core.text import display_line, display_text
from fluxmon.core.verdict import Phase

TOOLTIP_SESSION_LINES = 4
"""Tray hosts cut long tooltips; beyond this many sessions the tooltip only counts them."""
BODY_ERROR_CHARS = 300
RETRY_MESSAGE_CHARS = 80
"""A retried Helm failure in one line of the tooltip and the menu: its retry count and the start of its error."""


WORST_FIRST = (
    TrayState.FAILED,
    TrayState.UNREACHABLE,
    TrayState.ATTENTION,
    TrayState.DEPLOYING,
    TrayState.DEPLOYED,
    TrayState.IDLE,
)
"""When several sessions count, the first of these that any of them is in wins the icon."""

_BY_SESSION_STATE = {
    SessionState.WAITING_FOR_SOURCE: TrayState.DEPLOYING,
    SessionState.RECONCILING: TrayState.DEPLOYING,
    SessionState.SUCCEEDED: TrayState.DEPLOYED,
    SessionState.FAILED: TrayState.FAILED,
    SessionState.TIMED_OUT: TrayState.ATTENTION,
}
"""Superseded, cancelled and not-deployed sessions say nothing about what is deployed, so they leave the icon alone."""


def tray_state_of(snapshot: PushSnapshot | SessionSnapshot) -> TrayState | None:
    """A push's (the worst across its clusters) or one cluster's session's."""
    return _BY_SESSION_STATE.get(snapshot.state)


@dataclass(frozen=True, kw_only=True, slots=True)
class Overview:
    state: TrayState
    tooltip: str
    summary: str
    """The menu's first line: the last session in a few words."""


def overview(
    snapshots: Iterable[PushSnapshot],
    *,
    cluster_problems: Mapping[str, str] | None = None,
    paused_until: datetime | None = None,
    unfollowed: Collection[str] = (),
    config_problem: str = "",
) -> Overview:
    """The icon's state and texts for the pushes the tray knows (any order; newest snapshot of each).

    `cluster_problems`: what is wrong with a cluster, by the context to name it by ("" for none: one cluster;
    see `cluster_problems()`). `unfollowed`: ids of pushes on a remote and branch that no Flux source follows any
    more: they no longer count. `config_problem`: why the user's settings could not be applied.
    """
    problems = {context: problem for context, problem in (cluster_problems or {}).items() if problem}
    newest_first = sorted(snapshots, key=lambda s: s.started_at, reverse=True)
    counted: dict[tuple[str, str], PushSnapshot] = {}
    for snapshot in newest_first:
        if tray_state_of(snapshot) is not None:
            counted.setdefault((snapshot.remote, snapshot.branch), snapshot)
    counted = {key: snapshot for key, snapshot in counted.items() if snapshot.id not in unfollowed}
    states = {tray_state_of(s) for s in counted.values()}
    if problems:
        states.add(TrayState.UNREACHABLE)
    if config_problem:
        states.add(TrayState.ATTENTION)
    state = next((s for s in WORST_FIRST if s in states), TrayState.IDLE)
    if paused_until is not None and state is not TrayState.FAILED:
        state = TrayState.PAUSED
    summary = session_line(newest_first[0]) if newest_first else "No pushes yet"
    tooltip = _tooltip(
        state,
        list(counted.values()),
        cluster_problems=problems,
        paused_until=paused_until,
        config_problem=config_problem,
    )
    return Overview(state=state, tooltip=display_text(tooltip), summary=summary)


def cluster_problems(healths: Iterable[ClusterHealth], *, several: bool) -> dict[str, str]:
    """Each cluster's trouble by the context to name it by: its own when several clusters are followed, none ("")
    with one, whose line reads as it always did."""
    return {(health.context if several else ""): health.problem for health in healths if health.problem}


def session_line(snapshot: PushSnapshot) -> str:
    """One push in one line: `✗ main@1a2b3c4 failed: Kustomization/apps BuildFailed (42s)`; on several clusters
    `✔ main@1a2b3c4 deployed to dev, staging · prod progressing (42s)`."""
    mark = STATE_LOOKS[tray_state_of(snapshot) or TrayState.IDLE].mark
    text = f"{mark} {snapshot.branch}@{snapshot.short_commit} {describe(snapshot)}"
    return display_line(f"{text} ({format_duration(snapshot.elapsed)})")  # git's and the cluster's text


def describe(push: PushSnapshot) -> str:
    """The push's outcome in a few words; on several clusters, where it stands on each (the failure first, with
    what failed: `failed on prod: Kustomization/apps BuildFailed · deployed to dev`)."""
    if not push.several:
        return describe_session(push.first)
    failed = [cluster for cluster in push.clusters if cluster.state is SessionState.FAILED]
    first = failing(push)
    if not failed or first is None:
        return push.summary()
    others = [cluster for cluster in push.clusters if cluster.state is not SessionState.FAILED]
    what = _what_failed(first)
    text = f"failed on {', '.join(cluster.context for cluster in failed)}" + (f": {what}" if what else "")
    return f"{text} · {cluster_summary(others)}" if others else text


def failing(push: PushSnapshot) -> SessionSnapshot | None:
    """The session of the cluster the push failed on first (None unless it failed)."""
    if push.state is not SessionState.FAILED:
        return None
    return next((c for c in push.clusters if c.state is SessionState.FAILED and c.context == push.failed_on), None)


def _what_failed(session: SessionSnapshot) -> str:
    """`Kustomization/apps BuildFailed`: the object that failed first on this cluster, and why."""
    if session.failed is None:
        return ""
    failed = next((r for r in session.resources if r.ref == session.failed), None)
    reason = f" {failed.reason}" if failed and failed.reason else ""
    return f"{session.failed.kind}/{session.failed.name}{reason}"


def describe_session(snapshot: SessionSnapshot) -> str:
    """One cluster's session in a few words: `failed: Kustomization/apps BuildFailed`, `reconciling (2/4 ready)`."""
    if snapshot.state is SessionState.FAILED and snapshot.failed is not None:
        return f"failed: {_what_failed(snapshot)}"
    if snapshot.state in (SessionState.WAITING_FOR_SOURCE, SessionState.RECONCILING):
        done = sum(1 for r in snapshot.resources if r.role is not Role.UPSTREAM and r.phase is Phase.READY)
        total = sum(1 for r in snapshot.resources if r.role is not Role.UPSTREAM)
        text = f"{snapshot.state.value} ({done}/{total} ready)" if total else snapshot.state.value
        retrying = next((r for r in snapshot.resources if r.retrying), None)
        if retrying is not None:  # "upgrade failed, retry 1 of 3: …": a failure seen before it is final
            message = shorten(redact_text(one_line(retrying.message)), RETRY_MESSAGE_CHARS)
            text += f" · {retrying.ref.kind}/{retrying.ref.name} {message}"
        return text
    return snapshot.state.value


def _tooltip(
    state: TrayState,
    counted: Sequence[PushSnapshot],
    *,
    cluster_problems: Mapping[str, str],
    paused_until: datetime | None,
    config_problem: str = "",
) -> str:
    lines = [f"Flux Push Monitor: {state.value}"]
    if len(counted) > 1:
        tally: dict[str, int] = {}
        for snapshot in counted:
            key = (tray_state_of(snapshot) or TrayState.IDLE).value
            tally[key] = tally.get(key, 0) + 1
        lines[0] += " (" + ", ".join(f"{n} {name}" for name, n in tally.items()) + f" of {len(counted)} sessions)"
    for snapshot in counted[:TOOLTIP_SESSION_LINES]:
        lines.append(f"{repo_name(snapshot)} {session_line(snapshot)}")
    if len(counted) > TOOLTIP_SESSION_LINES:
        lines.append(f"… and {len(counted) - TOOLTIP_SESSION_LINES} more")
    for context, problem in cluster_problems.items():
        named = f" {display_line(context)}" if context else ""
        lines.append(f"cluster{named}: {one_line(redact_text(problem))}")
    if config_problem:
        lines.append(f"config: {one_line(config_problem)}")
    if paused_until is not None:
        lines.append(f"notifications paused until {paused_until:%H:%M}")
    return "\n".join(lines)


def repo_name(snapshot: PushSnapshot) -> str:
    """`fleet` for `https://host/org/fleet.git`: the short name users know their repository by."""
    tail = snapshot.remote.rstrip("/").rsplit(":", 1)[-1]
    name = PurePosixPath(tail).name
    return name.removesuffix(".git") or snapshot.remote


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


# --- notifications -----------------------------------------------------------------------------------------------


class Urgency(StrEnum):
    NORMAL = "normal"
    CRITICAL = "critical"


@dataclass(frozen=True, kw_only=True, slots=True)
class Notification:
    session_id: str
    outcome: SessionState
    title: str
    """Plain text: the notification spec renders summaries without markup."""
    body: str
    """Markup-escaped: servers such as dunst render `<b>` and `&amp;` in bodies."""
    urgency: Urgency
    closes: tuple[str, ...] = ()
    """Pushes whose (critical, sticky) notifications this one makes stale: the failures a fix deployed over."""


def failures_fixed_by(snapshot: PushSnapshot, known: Iterable[PushSnapshot]) -> tuple[PushSnapshot, ...]:
    """The failures on this success's remote and branch since the last success there, newest first: it fixed them.

    Sessions that say nothing about what is deployed (superseded, cancelled) and timeouts are passed over.
    """
    if snapshot.state is not SessionState.SUCCEEDED:
        return ()
    earlier = sorted(
        (
            other
            for other in known
            if (other.remote, other.branch) == (snapshot.remote, snapshot.branch)
            and other.id != snapshot.id
            and other.started_at <= snapshot.started_at
        ),
        key=lambda other: other.started_at,
        reverse=True,
    )
    fixed = []
    for other in earlier:
        if other.state is SessionState.SUCCEEDED:
            break
        if other.state is SessionState.FAILED:
            fixed.append(other)
    return tuple(fixed)


def notification_for(
    snapshot: PushSnapshot,
    *,
    sent: set[tuple[str, str]],
    paused_until: datetime | None = None,
    now: datetime,
    outcomes: Sequence[str] = NOTIFY_OUTCOMES,
    fixes: Sequence[PushSnapshot] = (),
) -> Notification | None:
    """The notification this push deserves, or None; `sent` holds (push id, outcome) already decided.

    One per outcome of the push, whatever its clusters do after it (a push failed on prod that later settles on
    dev keeps its one failure). `fixes`: the failures this success fixed (`failures_fixed_by`); it then says
    "fixed" and closes theirs.
    """
    if snapshot.state.value not in outcomes:
        return None
    key = (snapshot.id, snapshot.state.value)
    if key in sent:
        return None
    sent.add(key)  # decided once, also when paused: resuming later must not replay old outcomes
    if paused_until is not None and now < paused_until:
        return None
    return Notification(
        session_id=snapshot.id,
        outcome=snapshot.state,
        title=_title(snapshot, fixes=fixes),
        body=html.escape(redact_text(_body(snapshot, fixes=fixes)), quote=False),
        urgency=Urgency.CRITICAL if snapshot.state is SessionState.FAILED else Urgency.NORMAL,
        closes=tuple(failure.id for failure in fixes),
    )


def _title(snapshot: PushSnapshot, *, fixes: Sequence[PushSnapshot] = ()) -> str:
    """`✗ apps failed — main@1a2b3c4`; on several clusters, where: `✗ apps failed on prod — main@1a2b3c4`,
    `✔ fleet deployed to dev, prod — …`, `✔ fleet fixed on prod — …` (where the failure it fixed was)."""
    where = f"{snapshot.branch}@{snapshot.short_commit}"
    if snapshot.state is SessionState.FAILED:
        first = failing(snapshot)
        name = first.failed.name if first is not None and first.failed is not None else repo_name(snapshot)
        return f"✗ {name} failed{_on(snapshot, [snapshot.failed_on])} — {where}"
    if snapshot.state is SessionState.TIMED_OUT:
        return f"⚠ {repo_name(snapshot)} timed out{_on(snapshot, _contexts(snapshot, snapshot.state))} — {where}"
    if fixes:
        return f"✔ {repo_name(snapshot)} fixed{_on(snapshot, [fixes[0].failed_on])} — {where}"
    deployed = _contexts(snapshot, SessionState.SUCCEEDED)
    to = f" to {', '.join(deployed)}" if snapshot.several and deployed else ""
    return f"✔ {repo_name(snapshot)} deployed{to} — {where}"


def _contexts(push: PushSnapshot, state: SessionState) -> list[str]:
    return [cluster.context for cluster in push.clusters if cluster.state is state]


def _on(push: PushSnapshot, contexts: Sequence[str]) -> str:
    """` on prod`, where the push has several clusters (with one, the title reads as it always did)."""
    named = [context for context in contexts if context]
    return f" on {', '.join(named)}" if push.several and named else ""


def _body(snapshot: PushSnapshot, *, fixes: Sequence[PushSnapshot] = ()) -> str:
    lines = []
    first = failing(snapshot)
    if first is not None and first.failed is not None:
        failed = next((r for r in first.resources if r.ref == first.failed), None)
        if failed is not None:
            error = failed.error.strip().splitlines()[0] if failed.error.strip() else ""
            lines.append(f"{failed.ref.kind}/{failed.ref.name}: {failed.reason}")
            if error:
                # Redacted before it is cut: a URL cut mid-way is no longer seen as one, credentials and all.
                lines.append(shorten(redact_text(error), BODY_ERROR_CHARS))
        if snapshot.several:  # where the others stand: `deployed to dev · staging progressing`
            lines.append(cluster_summary(c for c in snapshot.clusters if c.context != snapshot.failed_on))
    else:
        lines.append(f"{snapshot.message} in {format_duration(snapshot.elapsed)}")
    if fixes:
        lines.append(f"fixes the failure of {describe_briefly(fixes[0])}")
    if snapshot.subject:
        lines.append(f"“{snapshot.subject}”")
    return "\n".join(lines)


_LAST_WORD = re.compile(r"\s+\S*\Z")


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut between words and ended with an ellipsis, so that what is cut
    is seen to be cut, and no token (a URL, a name, a digest) is shown half. A single word longer than `limit`
    is the one thing cut inside."""
    if len(text) <= limit:
        return text
    room = text[: limit - 1]
    last_word = _LAST_WORD.search(room)
    if not text[limit - 1].isspace() and last_word is not None and last_word.start() > 0:
        room = room[: last_word.start()]
    return room.rstrip() + "…"


def describe_briefly(snapshot: PushSnapshot) -> str:
    """`1a2b3c4 (Kustomization/apps BuildFailed)`: which push, and what went wrong (and where, on several
    clusters: `1a2b3c4 on prod (Kustomization/apps BuildFailed)`)."""
    first = failing(snapshot)
    what = _what_failed(first) if first is not None else ""
    return f"{snapshot.short_commit}{_on(snapshot, [snapshot.failed_on])} ({what or snapshot.state.value})"


def pause_until(choice: str, now: datetime) -> datetime | None:
    """The end of a pause chosen in the menu: `hour`, `tomorrow` (08:00 next day), or `resume` (None)."""
    if choice == "hour":
        return now + timedelta(hours=1)
    if choice == "tomorrow":
        return (now + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return None
