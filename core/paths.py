"""Where fluxmon keeps things on disk, per the XDG base directory spec, worked out in one place.

Every function takes the environment as an argument (the process's by default), so that tests and the demo can
point fluxmon elsewhere without touching the user's home.

    config     $XDG_CONFIG_HOME/fluxmon (config.toml, the global git hooks)     default ~/.config/fluxmon
    state      $XDG_STATE_HOME/fluxmon (history, active sessions, the pause)    default ~/.local/state/fluxmon
    runtime    $XDG_RUNTIME_DIR/fluxmon (private scratch: the tray's icons)     else <state>/run
    spool      $FLUXMON_SPOOL_DIR, else <runtime>/spool, else <state>/spool
    autostart  $XDG_CONFIG_HOME/autostart/fluxmon.desktop
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP = "fluxmon"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME", "~")).expanduser()


def config_home(environ: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CONFIG_HOME`, else ~/.config (shared by every XDG application)."""
    return Path(environ.get("XDG_CONFIG_HOME") or _home(environ) / ".config")


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return config_home(environ) / APP


def user_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    return config_dir(environ) / "config.toml"


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Per user whatever the environment: the spool moves with XDG_RUNTIME_DIR, the history does not."""
    return Path(environ.get("XDG_STATE_HOME") or _home(environ) / ".local" / "state") / APP


def runtime_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Private per-user scratch space: `$XDG_RUNTIME_DIR/fluxmon`, else a folder under the state dir."""
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / APP
    return state_dir(environ) / "run"


def spool_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`$FLUXMON_SPOOL_DIR`, else `$XDG_RUNTIME_DIR/fluxmon/spool`, else `$XDG_STATE_HOME/fluxmon/spool`."""
    if environ.get("FLUXMON_SPOOL_DIR"):
        return Path(environ["FLUXMON_SPOOL_DIR"])
    if environ.get("XDG_RUNTIME_DIR"):
        return runtime_dir(environ) / "spool"
    return state_dir(environ) / "spool"


def autostart_path(environ: Mapping[str, str] = os.environ) -> Path:
    return config_home(environ) / "autostart" / f"{APP}.desktop"
