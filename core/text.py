"""Text from git and the cluster, made safe to show a person, and still exact for machines.

A commit subject, a controller message or an object name is anyone's text. Written raw to a terminal, an ESC
sequence in it can clear the screen, retitle the window or fake a "deployed" line; a BEL rings; a carriage
return overwrites what was printed; a C1 control (U+0080 to U+009F) is an escape of its own to many terminals;
a bidirectional override reorders what follows it. So every such character is replaced before the text
reaches a terminal, a notification or the details window. `--json` output keeps the text exact, with these
characters escaped: `json.dumps(..., ensure_ascii=False)` escapes only C0, and leaves C1, DEL and the bidi
controls raw.

    display_text("ok\\x1b[2Jdone\\n")  ->  "ok�[2Jdone\\n"     (newlines kept: multi-line errors)
    display_line("a\\nb\\tc")          ->  "a b c"             (one line: a log line, a table cell)
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar, cast

T = TypeVar("T")

REPLACEMENT = "\N{REPLACEMENT CHARACTER}"

_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI_CONTROLS}]")
"""C0 but the newline, DEL, C1, and the bidirectional controls (tab included: it moves the cursor too)."""
_UNSAFE_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_CONTROLS}]")
_LINE_BREAKS = re.compile("[\n\t\v\f\r\x85\u2028\u2029]+")
_RAW_IN_JSON = re.compile(f"[\x7f-\x9f{_BIDI_CONTROLS}\u2028\u2029]")


def display_text(text: str) -> str:
    """`text` with every control character replaced by U+FFFD, newlines kept (a tab becomes a space)."""
    return _UNSAFE.sub(lambda match: " " if match.group(0) == "\t" else REPLACEMENT, text)


def display_line(text: str) -> str:
    """`text` on one line: line breaks and tabs become a space, every other control character U+FFFD."""
    return _UNSAFE_IN_LINE.sub(REPLACEMENT, _LINE_BREAKS.sub(" ", text))


def json_text(value: Any) -> str:
    """`json.dumps(value, ensure_ascii=False)` with C1, DEL and bidi controls escaped too (`\\u009b`).

    Outside strings JSON is plain ASCII, so an escape written here can only land inside a string, where it
    means the same character: the text stays exact for the reader, and harmless on a terminal.
    """
    return _RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group(0)):04x}", json.dumps(value, ensure_ascii=False))


def display_width(text: str) -> int:
    """The columns `text` takes on a terminal: East Asian wide characters take two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def display_value(value: T) -> T:
    """`value` (a session snapshot, say) with every string in it passed through `display_text`: one call where
    a window receives it, instead of one at each of the many places that show one of its fields."""
    if isinstance(value, Enum):
        return value  # a StrEnum is a str, but our own constant, and must stay itself
    if isinstance(value, str):
        return cast(T, display_text(value))
    if isinstance(value, tuple):
        return cast(T, tuple(display_value(item) for item in value))
    if isinstance(value, Mapping):
        return cast(T, {display_value(key): display_value(item) for key, item in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: display_value(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return cast(T, dataclasses.replace(value, **changes))
    return value
