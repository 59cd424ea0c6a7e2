"""The composition root's desktop half: the tray, given its engine, icon and notifier (as udiskie's cli.py does).

`fluxmon tray` and `fluxmon demo` both build the tray here, so that neither builds it differently; the tray builds
none of its collaborators itself. The UI is imported lazily, so that the terminal verbs never load it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fluxmon.core.config import Config
from fluxmon.core.engine import Engine
from fluxmon.core.errors import InputError
from fluxmon.core.push import PushSnapshot

if TYPE_CHECKING:
    from fluxmon.tray.app import TrayApp


def notifier_kind(environ: Mapping[str, str] = os.environ) -> str:
    """`FLUXMON_NOTIFIER` (dbus, plyer or none; unset: the tray chooses), read here, at the composition root."""
    from fluxmon.tray.notify import NOTIFIER_KINDS

    wanted = environ.get("FLUXMON_NOTIFIER", "")
    if wanted and wanted not in NOTIFIER_KINDS:
        raise InputError(f"FLUXMON_NOTIFIER={wanted[:40]!r}: expected one of {', '.join(NOTIFIER_KINDS)}, or unset")
    return wanted


def build_tray(
    engine: Engine,
    *,
    config: Config,
    backend: str,
    icon_dir: Path,
    notifier: str = "",
    context_given: bool = False,
    kubeconfig: str | None = None,
    observer: Callable[[PushSnapshot], None] | None = None,
) -> TrayApp:
    """The tray, given its engine, its icon (on `backend`) and its notifier (of kind `notifier`): the one place
    that builds them (`fluxmon tray` and `fluxmon demo` alike). `context_given` and `kubeconfig`: the command
    line's `--context`/`--all-contexts` and `--kubeconfig` (see TrayApp)."""
    from fluxmon.tray.app import TrayApp
    from fluxmon.tray.icon import TrayIcon
    from fluxmon.tray.menu import Action
    from fluxmon.tray.notify import Delivered, Notifier, make_notifier

    def icon(*, on_action: Callable[[Action], None]) -> TrayIcon:
        return TrayIcon(backend=backend, on_action=on_action, icon_dir=icon_dir)

    def notifications(*, on_details: Callable[[str], None], on_delivered: Delivered) -> Notifier:
        return make_notifier(notifier, on_details=on_details, on_delivered=on_delivered)

    return TrayApp(
        engine,
        config=config,
        icon=icon,
        notifier=notifications,
        context_given=context_given,
        kubeconfig=kubeconfig,
        observer=observer,
    )
