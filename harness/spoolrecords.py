"""A valid spool record (what the hooks write), to vary one field at a time."""

from __future__ import annotations

from typing import Any

from fluxmon.core.spool import SCHEMA

SHA = "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"


def record(session_id: str = "s1", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": SCHEMA,
        "id": session_id,
        "push_id": "p1",
        "created_at": "2026-11-25T19:00:00Z",
        "repo": "/home/ada/fleet",
        "remote": {"name": "origin", "url": "git@github.com:acme/fleet.git"},
        "ref": {
            "kind": "branch",
            "name": "main",
            "remote_ref": "refs/heads/main",
            "old": "0" * 40,
            "new": SHA,
            "forced": False,
        },
        "confirmed": True,
        "confirmed_by": "remote-tracking-ref",
        "changes": {"paths": ["apps/web.yaml"], "count": 1},
        "commit": {"subject": "Scale web", "author": "Ada <ada@example.com>"},
        "config": {"timeout_seconds": 300},
    }
    base.update(overrides)
    return base
