"""`fluxmon autostart enable|disable`: the XDG autostart entry that starts the tray at login.

The entry is assets/fluxmon.desktop with this interpreter's absolute path filled in, so it starts the same
installation (a venv included) whatever PATH the login session has.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from fluxmon.core.paths import autostart_path

ENTRY_NAME = "fluxmon.desktop"


def _quoted(argument: str) -> str:
    """An Exec argument as the Desktop Entry spec quotes it: in double quotes when it holds anything special."""
    if all(c.isalnum() or c in "/._-+" for c in argument):
        return argument
    escaped = "".join(f"\\{c}" if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def entry_text() -> str:
    assets = importlib.resources.files("fluxmon.assets")
    template = assets.joinpath(ENTRY_NAME).read_text(encoding="utf-8")
    icon = assets.joinpath("icons", "deployed-64.png")
    command = " ".join(_quoted(a) for a in (sys.executable, "-m", "fluxmon"))
    return template.replace("@EXEC@", command).replace("@ICON@", str(icon))


def enable(environ: Mapping[str, str] = os.environ) -> Path:
    path = autostart_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{ENTRY_NAME}.tmp")
    temp.write_text(entry_text(), encoding="utf-8")
    temp.replace(path)
    return path


def disable(environ: Mapping[str, str] = os.environ) -> Path | None:
    path = autostart_path(environ)
    if not path.exists():
        return None
    path.unlink()
    return path
