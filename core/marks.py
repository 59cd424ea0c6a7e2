"""How a state looks, in one table for every front end: the terminal, the tray's menu and tooltip, the window.

Marks are the flux CLI's own (`►` action, `◎` waiting, `✔` success, `✗` failure), which people who use Flux read
at a glance. Each phase also has its terminal colour (an ANSI SGR code) and the window's (a Tk colour); "" means
the medium's default. A tray state has a mark for the menu's and tooltip's session lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fluxmon.core.verdict import Phase

ACTION, WAITING, SUCCESS, FAILURE = "►", "◎", "✔", "✗"


class TrayState(StrEnum):
    """What the icon shows: the worst state that counts (see core.overview)."""

    IDLE = "idle"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    FAILED = "failed"
    ATTENTION = "attention"
    UNREACHABLE = "unreachable"
    PAUSED = "paused"


@dataclass(frozen=True, kw_only=True, slots=True)
class Look:
    mark: str
    ansi: str = ""
    """The terminal's colour: an SGR code such as "32" (green)."""
    tk: str = ""
    """The window's colour: a Tk colour such as "#1e7b34"."""


GREEN, RED, BLUE, AMBER = "#1e7b34", "#b3141f", "#1d5fb4", "#9a6700"

PHASE_LOOKS = {
    Phase.READY: Look(mark=SUCCESS, ansi="32", tk=GREEN),
    Phase.FAILED: Look(mark=FAILURE, ansi="31", tk=RED),
    Phase.PROGRESSING: Look(mark=ACTION, ansi="36", tk=BLUE),
    Phase.WAITING: Look(mark=WAITING, ansi="33", tk=AMBER),
    Phase.PENDING: Look(mark=WAITING, ansi="33"),
    Phase.SUSPENDED: Look(mark=WAITING, ansi="33"),
    Phase.UNKNOWN: Look(mark=WAITING, ansi="33"),
}

STATE_LOOKS = {
    TrayState.IDLE: Look(mark="·"),
    TrayState.DEPLOYING: Look(mark=WAITING, ansi="33", tk=AMBER),
    TrayState.DEPLOYED: Look(mark=SUCCESS, ansi="32", tk=GREEN),
    TrayState.FAILED: Look(mark=FAILURE, ansi="31", tk=RED),
    TrayState.ATTENTION: Look(mark="⚠", ansi="33", tk=AMBER),
    TrayState.UNREACHABLE: Look(mark="⚠", ansi="33", tk=AMBER),
    TrayState.PAUSED: Look(mark="⏸"),
}

MARK_ANSI = {look.mark: look.ansi for look in PHASE_LOOKS.values()}
"""A progress line's colour follows its mark (`✔ … deployed` is green whichever phase said it)."""
