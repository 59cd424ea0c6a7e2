"""Run on the test desktop (`python -m tests.icon_probe DIR`): shows our TrayIcon, changes it, and prints what GTK
holds, so a test can check the pystray workarounds from outside the pytest process (GTK binds to one display)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from fluxmon.core.marks import TrayState
from fluxmon.tray.icon import TrayIcon, choose_backend
from fluxmon.tray.menu import build_menu


def main() -> None:
    icon_dir = Path(sys.argv[1])
    menu = build_menu(summary="No pushes yet", recent=[], paused_until=None, can_reconcile=False)
    tray = TrayIcon(backend=choose_backend(), on_action=print, icon_dir=icon_dir)
    tray.start(state=TrayState.IDLE, tooltip="first", menu=menu)
    tray.show(state=TrayState.FAILED, tooltip="Flux Push Monitor: failed")
    from gi.repository import GLib

    seen: dict[str, Any] = {}
    looked = threading.Event()

    def look() -> bool:
        status_icon = tray._icon._status_icon
        seen.update(tooltip=status_icon.get_tooltip_text(), files=sorted(p.name for p in icon_dir.iterdir()))
        looked.set()
        return False

    GLib.idle_add(look)  # after the changes pystray queued on the same loop
    looked.wait(10)
    tray.stop()
    seen["left_after_stop"] = icon_dir.exists()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
