"""A push's outcome, as the integrations hand it on: the versioned JSON payload, a Slack message, a Teams card, the
environment of a command, the signature and the idempotency key. Pure functions of a `PushSnapshot`.

The JSON payload (`"version": 1`) is a documented interface (README, "Hand the outcome on"): fields are added,
never renamed or removed, within a version. Text in it is exact (only URLs' credentials are removed: the remote,
and any URL a controller message quotes); Slack's and Teams' markup is escaped where they would read it.

The idempotency key names the push by what it is, not by which process followed it: the redacted remote, the
branch, the commit and the clusters. The tray and `fluxmon wait` give one push different session ids, and must
still agree that its outcome was handed on (core/outbox.py claims each key once).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fluxmon.core.push import PushSnapshot
from fluxmon.core.redact import redact_text, redact_url
from fluxmon.core.session import ResourceStatus, SessionState
from fluxmon.core.text import display_line
from fluxmon.core.verdict import Phase

PAYLOAD_VERSION = 1
PAYLOAD_TYPE = "fluxmon.push.outcome"
SIGNATURE_HEADER = "X-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Slack's documented limits (https://api.slack.com/reference/block-kit/blocks): a header's plain_text 150
# characters, a section's text 3000, a field 2000 and 10 fields, 50 blocks; the fallback `text` is what a
# notification shows (https://api.slack.com/messaging/webhooks).
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000
SLACK_FIELD_CHARS = 2000
SLACK_FIELDS = 10
PROBLEMS_SHOWN = 5
"""Failing objects spelled out in a Slack or Teams message; the JSON payload has all of them."""
TEAMS_CARD_VERSION = "1.4"
"""Teams renders Adaptive Cards up to 1.4 (so does Flux's own notifier: fluxcd/notification-controller
internal/notifier/teams.go, msAdaptiveCardVersion)."""

_WORDS = {
    SessionState.SUCCEEDED: "deployed",
    SessionState.FAILED: "failed",
    SessionState.TIMED_OUT: "timed out",
    SessionState.SUPERSEDED: "superseded",
    SessionState.NOT_DEPLOYED: "not deployed",
    SessionState.CANCELLED: "cancelled",
}
_SLACK_MARKS = {SessionState.SUCCEEDED: ":white_check_mark:", SessionState.FAILED: ":x:"}
_TEAMS_COLOURS = {SessionState.SUCCEEDED: "Good", SessionState.FAILED: "Attention", SessionState.TIMED_OUT: "Warning"}


def session_key(push: PushSnapshot) -> str:
    """The push by what it is: remote (redacted), branch, commit and the clusters it is followed on."""
    contexts = ",".join(sorted(cluster.context for cluster in push.clusters))
    what = "\n".join((redact_url(push.remote), push.branch, push.commit, contexts))
    return hashlib.sha256(what.encode()).hexdigest()[:24]


def idempotency_key(push: PushSnapshot) -> str:
    """`<session key>:<outcome>`: the same outcome of the same push, whichever process hands it on."""
    return f"{session_key(push)}:{push.state.value}"


def headline(push: PushSnapshot) -> str:
    """`main@1a2b3c4 failed`: what happened, in a few words (no markup)."""
    return f"{push.branch}@{push.short_commit} {_WORDS.get(push.state, push.state.value)}"


def outcome_payload(push: PushSnapshot) -> dict[str, Any]:
    """The versioned JSON payload (format `json`, and every command's stdin)."""
    return {
        "version": PAYLOAD_VERSION,
        "type": PAYLOAD_TYPE,
        "idempotency_key": idempotency_key(push),
        "session": {"id": push.id, "key": session_key(push)},
        "outcome": push.state.value,
        "message": redact_text(push.message),
        "remote": redact_url(push.remote),
        "branch": push.branch,
        "commit": push.commit,
        "short_commit": push.short_commit,
        "subject": push.subject,
        "failed_on": push.failed_on or None,
        "failed": str(push.failed) if push.failed else None,
        "clusters": [
            {
                "context": cluster.context,
                "outcome": cluster.state.value,
                "message": redact_text(cluster.message),
                "problem": redact_text(cluster.cluster.problem) or None,
                "ended_at": _iso(cluster.ended_at),
            }
            for cluster in push.clusters
        ],
        "objects": [_object(r, cluster.context) for cluster in push.clusters for r in cluster.resources],
        "times": {
            "started_at": _iso(push.started_at),
            "ended_at": _iso(push.ended_at),
            "elapsed_seconds": round(push.elapsed, 3),
        },
    }


def _object(r: ResourceStatus, context: str) -> dict[str, Any]:
    return {
        "context": context,
        "kind": r.ref.kind,
        "namespace": r.ref.namespace,
        "name": r.ref.name,
        "phase": r.phase.value,
        "reason": r.reason,
        "message": redact_text(r.message),
        "revision": r.revision,
        "error": redact_text(r.error) if r.error else None,
        "hint": {"cause": r.hint.cause, "docs": r.hint.docs, "command": r.hint.command} if r.hint else None,
    }


def _iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC, with its zone: `2026-12-01T02:06:11+00:00`."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _problems(push: PushSnapshot) -> list[tuple[str, ResourceStatus]]:
    return [(cluster.context, r) for cluster in push.clusters for r in cluster.resources if r.phase is Phase.FAILED][
        :PROBLEMS_SHOWN
    ]


def _where(push: PushSnapshot) -> str:
    return ", ".join(c.context or "the cluster" for c in push.clusters) if push.several else ""


def slack_payload(push: PushSnapshot) -> dict[str, Any]:
    """An incoming-webhook message in Block Kit: a header, the message, the facts as fields, and each failing
    object with its error and hint. `text` is the fallback a notification shows."""
    title = f"{_SLACK_MARKS.get(push.state, ':warning:')} {headline(push)}"
    fields = [
        ("Remote", redact_url(push.remote)),
        ("Branch", push.branch),
        ("Commit", f"`{push.short_commit}` {push.subject}"),
        ("Elapsed", f"{push.elapsed:.0f}s"),
    ]
    if push.several:
        fields.append(("Clusters", push.summary()))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(display_line(title), SLACK_HEADER_CHARS)}},
        {"type": "section", "text": _mrkdwn(redact_text(push.message), SLACK_SECTION_CHARS)},
        {
            "type": "section",
            "fields": [_mrkdwn(f"*{name}*\n{value}", SLACK_FIELD_CHARS) for name, value in fields][:SLACK_FIELDS],
        },
    ]
    for context, r in _problems(push):
        lines = [f"*{r.ref}*" + (f" on {context}" if push.several else ""), redact_text(r.error or r.message)]
        if r.hint is not None:
            lines.append(f"{r.hint.cause}\n{r.hint.docs}\n{r.hint.command}")
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines), SLACK_SECTION_CHARS)})
    fallback = _mrkdwn(display_line(f"{headline(push)}: {redact_text(push.message)}"), SLACK_SECTION_CHARS)
    return {"text": fallback["text"], "blocks": blocks}  # Slack reads the fallback as mrkdwn too: escaped alike


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    """Slack's mrkdwn text object; `&`, `<` and `>` escaped as its docs ask
    (https://api.slack.com/reference/surfaces/formatting#escaping), so no text can make a link or a mention."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"type": "mrkdwn", "text": _cut(escaped, limit)}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def teams_payload(push: PushSnapshot) -> dict[str, Any]:
    """A message with one Adaptive Card attachment, as Teams Workflows' "when a webhook request is received"
    accepts (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using)."""
    facts = [
        {"title": "Remote", "value": redact_url(push.remote)},
        {"title": "Branch", "value": push.branch},
        {"title": "Commit", "value": f"{push.short_commit} {push.subject}"},
        {"title": "Elapsed", "value": f"{push.elapsed:.0f}s"},
    ]
    if push.several:
        facts.append({"title": "Clusters", "value": push.summary()})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": headline(push), "size": "Large", "weight": "Bolder", "wrap": True},
        {
            "type": "TextBlock",
            "text": redact_text(push.message),
            "wrap": True,
            "color": _TEAMS_COLOURS.get(push.state, "Default"),
        },
        {"type": "FactSet", "facts": facts},
    ]
    for context, r in _problems(push):
        name = f"{r.ref}" + (f" on {context}" if push.several else "")
        body.append({"type": "TextBlock", "text": name, "weight": "Bolder", "wrap": True})
        body.append({"type": "TextBlock", "text": redact_text(r.error or r.message), "wrap": True})
        if r.hint is not None:
            body.append({"type": "TextBlock", "text": f"{r.hint.cause} ({r.hint.docs})", "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": TEAMS_CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


PAYLOADS = {"json": outcome_payload, "slack": slack_payload, "teams": teams_payload}


def command_environment(push: PushSnapshot, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (fluxmon's own environment) and the push: FLUXMON_OUTCOME, FLUXMON_COMMIT and the like. Values are
    one line each (a subject may hold anything), and NUL-free, as an environment must be."""
    values = {
        "FLUXMON_OUTCOME": push.state.value,
        "FLUXMON_MESSAGE": redact_text(push.message),
        "FLUXMON_COMMIT": push.commit,
        "FLUXMON_SHORT_COMMIT": push.short_commit,
        "FLUXMON_BRANCH": push.branch,
        "FLUXMON_REMOTE": redact_url(push.remote),
        "FLUXMON_SUBJECT": push.subject,
        "FLUXMON_REPO": push.repo,
        "FLUXMON_SESSION_ID": push.id,
        "FLUXMON_IDEMPOTENCY_KEY": idempotency_key(push),
        "FLUXMON_CONTEXTS": ",".join(cluster.context for cluster in push.clusters),
        "FLUXMON_FAILED_ON": push.failed_on,
        "FLUXMON_FAILED": str(push.failed) if push.failed else "",
    }
    return {**base, **{name: display_line(value).replace("\x00", "") for name, value in values.items()}}


def signature(body: bytes, secret: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the exact body, as Flux's generic-hmac provider signs its events
    (fluxcd/notification-controller internal/notifier/forwarder.go @ 2e46958a, `sign` and the X-Signature header)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
