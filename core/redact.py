"""Credentials out of everything shown or stored: URLs, and free text that may quote one.

One module, so that every place that shows a git error, a controller message or a remote URL redacts the same
way. `redact_text` finds each URL in free text (a bounded scheme, up to whitespace or a quote) and passes it to
`redact_url`, which never raises: a URL that does not parse loses everything before its `@`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """The URL with any password or token removed; ssh user names (`git@`) are kept, they are no secret.

    Never raises: a URL that does not parse (`https://token@[oops/x`) loses everything before its `@` instead.
    """
    url = url.strip()
    if "://" not in url:
        return url  # scp-like (`git@host:path`) and local paths carry no password.
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(r"\g<scheme>***@", url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    if parts.scheme in ("ssh", "git+ssh") and not has_password:
        return url
    # Over http(s) a lone user name is usually a token itself (https://<token>@host), so all of it goes.
    redacted = f"{user}:***@{hostport}" if parts.scheme in ("ssh", "git+ssh") else f"***@{hostport}"
    return urlunsplit((parts.scheme, redacted, parts.path, parts.query, parts.fragment))


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^\s\"'<>]+")
"""A URL in free text. The scheme's length is bounded: unbounded, a long `a.a.a.…` message costs quadratic time."""


def redact_text(text: str) -> str:
    """Free text (a controller message, an error) with every URL in it redacted as `redact_url` does."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
