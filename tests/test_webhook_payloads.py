"""The webhook formats against their documented shapes: JSON Schemas written here from the docs (neither Slack nor
Microsoft publishes one as an installable package), each rule citing where it is documented.

- Slack Block Kit, incoming webhooks: https://api.slack.com/reference/block-kit/blocks (header: plain_text up to
  150 characters; section: text up to 3000, fields up to 10 of up to 2000; at most 50 blocks),
  https://api.slack.com/reference/block-kit/composition-objects#text (the text object),
  https://api.slack.com/messaging/webhooks (`text` is the notification's fallback).
- Teams Workflows ("When a Teams webhook request is received"): a `message` with one Adaptive Card attachment,
  https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using;
  the card's elements per https://adaptivecards.io/explorer/ (TextBlock, FactSet), version 1.4 at most in Teams.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from fluxmon.core.outcome import outcome_payload, slack_payload, teams_payload
from fluxmon.core.push import PushSnapshot, combine
from fluxmon.core.session import SessionState
from harness.snapshots import failed_snapshot, snapshot


def _text(kind: str | None, limit: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"const": kind} if kind else {"enum": ["plain_text", "mrkdwn"]},
            "text": {"type": "string", "minLength": 1, "maxLength": limit},
            "emoji": {"type": "boolean"},
            "verbatim": {"type": "boolean"},
        },
        "additionalProperties": False,
    }


SLACK_MESSAGE = {
    "type": "object",
    "required": ["text", "blocks"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "header"}, "text": _text("plain_text", 150)},
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["type"],
                        "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                        "properties": {
                            "type": {"const": "section"},
                            "text": _text(None, 3000),
                            "fields": {"type": "array", "minItems": 1, "maxItems": 10, "items": _text(None, 2000)},
                        },
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "properties": {
                            "type": {"const": "context"},
                            "elements": {"type": "array", "maxItems": 10, "items": _text(None, 3000)},
                        },
                        "additionalProperties": False,
                    },
                ]
            },
        },
    },
    "additionalProperties": False,
}

_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "TextBlock"},
        "text": {"type": "string"},
        "size": {"enum": ["Default", "Small", "Medium", "Large", "ExtraLarge"]},
        "weight": {"enum": ["Default", "Lighter", "Bolder"]},
        "color": {"enum": ["Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"]},
        "wrap": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_FACT_SET = {
    "type": "object",
    "required": ["type", "facts"],
    "properties": {
        "type": {"const": "FactSet"},
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "value"],
                "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
TEAMS_MESSAGE = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "$schema": {"const": "http://adaptivecards.io/schemas/adaptive-card.json"},
                            "type": {"const": "AdaptiveCard"},
                            "version": {"enum": ["1.0", "1.1", "1.2", "1.3", "1.4"]},
                            "body": {"type": "array", "minItems": 1, "items": {"oneOf": [_TEXT_BLOCK, _FACT_SET]}},
                            "msteams": {"type": "object", "properties": {"width": {"enum": ["Full"]}}},
                        },
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def pushes() -> list[PushSnapshot]:
    hostile = failed_snapshot(
        context="prod",
        message="failed <!channel> & <https://evil.example|click> " + "x" * 5000,
        subject="<@U123> " + "long subject " * 40,
    )
    return [
        combine([failed_snapshot(context="dev")]),
        combine([snapshot(SessionState.SUCCEEDED, context="dev")]),
        combine([snapshot(SessionState.TIMED_OUT, context="dev")]),
        combine([snapshot(SessionState.SUCCEEDED, context="dev"), hostile]),
    ]


def test_slack_messages_are_valid_block_kit() -> None:
    for push in pushes():
        jsonschema.validate(slack_payload(push), SLACK_MESSAGE)


def test_slack_text_cannot_ping_the_channel_or_make_a_link() -> None:
    message = json.dumps(slack_payload(pushes()[3]))
    assert "<!channel>" not in message
    assert "&lt;!channel&gt;" in message
    assert "<https://evil.example" not in message
    assert "<@U123>" not in message


def test_teams_messages_are_adaptive_cards_that_workflows_accept() -> None:
    for push in pushes():
        jsonschema.validate(teams_payload(push), TEAMS_MESSAGE)
    card = teams_payload(pushes()[0])["attachments"][0]["content"]
    assert card["body"][1]["color"] == "Attention"


OUTCOME_SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "outcome.schema.json").read_text(encoding="utf-8"))


def test_the_json_payload_follows_its_documented_schema() -> None:
    for push in pushes():
        jsonschema.validate(outcome_payload(push), OUTCOME_SCHEMA)


def test_the_json_payload_names_every_cluster_and_object() -> None:
    payload = outcome_payload(pushes()[3])
    assert (payload["version"], payload["type"], payload["outcome"], payload["failed_on"]) == (
        1, "fluxmon.push.outcome", "failed", "prod"
    )  # fmt: skip
    assert [c["context"] for c in payload["clusters"]] == ["dev", "prod"]
    assert {o["context"] for o in payload["objects"]} == {"dev", "prod"}
    assert payload["remote"] == "https://git.example.com/acme/fleet.git"
