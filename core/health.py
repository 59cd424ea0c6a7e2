"""Is the cluster in trouble? Decided once, here, from the informer's kind states, and carried in every snapshot.

The session manager works it out on each pass and puts it into the snapshots it publishes (and hands it to health
subscribers when it changes, for a tray with no session open), so that no front end reads the cache itself:
the tray shows `problem`, `wait` and `watch` stop early on `give_up`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from fluxmon.core.cluster import PLURALS, ClusterError, ClusterUnreachable, FluxNotInstalled, Forbidden, Unauthorized
from fluxmon.core.informer import KindState, KindStatus

UNREACHABLE_TRIES = 3
"""A cluster never reached is given up (by a front end that gives up) after this many failed connections in a row:
with the informer's backoff about 2 s on a closed port, so that a server starting a moment later is still caught."""
PROBLEM_STATUSES = (KindStatus.UNREACHABLE, KindStatus.UNAUTHORIZED, KindStatus.FORBIDDEN, KindStatus.MISSING)
"""A kind in one of these is worth a line in the tray: the user may have to do something."""
TROUBLED_STATUSES = (KindStatus.FORBIDDEN, KindStatus.UNAUTHORIZED, KindStatus.UNREACHABLE)
"""A kind a session needs in one of these gets a note on that session (a missing kind is simply not there)."""


class GiveUp(StrEnum):
    """Why waiting on can only end in a timeout."""

    UNAUTHORIZED = "unauthorized"
    NOT_INSTALLED = "not-installed"
    FORBIDDEN = "forbidden"
    UNREACHABLE = "unreachable"


_ERRORS: dict[GiveUp, type[ClusterError]] = {
    GiveUp.UNAUTHORIZED: Unauthorized,
    GiveUp.NOT_INSTALLED: FluxNotInstalled,
    GiveUp.FORBIDDEN: Forbidden,
    GiveUp.UNREACHABLE: ClusterUnreachable,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterHealth:
    """The cluster as the informer knows it: per kind, and in one line for a person."""

    server: str = ""
    context: str = ""
    kinds: tuple[KindState, ...] = ()
    reached: bool = False
    """Whether any kind has ever been read: from then on, trouble is an outage, not a wrong cluster."""
    problem: str = ""
    """The first kind's trouble in one sentence ("" when there is none): what the tray shows."""
    give_up: GiveUp | None = None
    give_up_message: str = ""

    def error(self) -> ClusterError | None:
        """What a front end that gives up raises (None: keep waiting)."""
        return _ERRORS[self.give_up](self.give_up_message) if self.give_up is not None else None

    def unreached(self, timeout: float) -> ClusterUnreachable:
        """Why a session on a cluster never read did not end: what the connection said, or its silence."""
        unreachable = [s for s in self.kinds if s.status is KindStatus.UNREACHABLE]
        if unreachable:
            return ClusterUnreachable(unreachable[0].message)
        return ClusterUnreachable(
            f"the API server at {self.server} (context {self.context!r}) accepted the connection but did not "
            f"answer within {timeout:g}s"
        )


def cluster_health(
    states: Mapping[str, KindState], *, server: str = "", context: str = "", reached_before: bool = False
) -> ClusterHealth:
    """The one decision about the cluster's health (pure)."""
    kinds = tuple(states.values())
    reached = reached_before or any(s.status is KindStatus.SYNCED for s in kinds)
    problems = [s for s in kinds if s.status in PROBLEM_STATUSES]
    give_up, message = (None, "") if reached else _give_up(kinds, server=server, context=context)
    return ClusterHealth(
        server=server,
        context=context,
        kinds=kinds,
        reached=reached,
        problem=problems[0].message if problems else "",
        give_up=give_up,
        give_up_message=message,
    )


def _give_up(states: tuple[KindState, ...], *, server: str, context: str) -> tuple[GiveUp | None, str]:
    """Whether waiting on a cluster never read can only end in a timeout, and why.

    A 401 and "Flux not installed" are final at once. A 403 is final when it covers every kind that is served.
    A cluster that refuses or drops the connection gets UNREACHABLE_TRIES tries.
    """
    unauthorized = [s for s in states if s.status is KindStatus.UNAUTHORIZED]
    if unauthorized:
        return GiveUp.UNAUTHORIZED, unauthorized[0].message
    if states and all(s.status is KindStatus.MISSING for s in states):
        return GiveUp.NOT_INSTALLED, states[0].message
    forbidden = [s for s in states if s.status is KindStatus.FORBIDDEN]
    if forbidden and all(s.status in (KindStatus.FORBIDDEN, KindStatus.MISSING) for s in states):
        kinds = ", ".join(PLURALS[s.kind] for s in forbidden)
        return GiveUp.FORBIDDEN, (
            f"the credentials of context {context!r} may read none of the Flux kinds on {server}: fluxmon needs "
            f"get, list and watch on {kinds} (and list on events); the README lists the minimal ClusterRole. "
            f"Server said: {forbidden[0].message.rpartition('Server said: ')[2]}"
        )
    if states and all(s.status is KindStatus.UNREACHABLE and s.failures >= UNREACHABLE_TRIES for s in states):
        return GiveUp.UNREACHABLE, f"{states[0].message} (tried {UNREACHABLE_TRIES} times)"
    return None, ""
