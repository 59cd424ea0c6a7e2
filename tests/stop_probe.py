"""Run on the test desktop (`python -m tests.stop_probe DIR`): a TrayApp that is asked to quit as soon as it has
started, and handed a failed session's final snapshot just as it stops (by a log handler on its "tray stopping"
line, on the UI thread, so the order is certain). Exits with the app's status. Out of the pytest process, because
GTK binds to one display for good."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from fluxmon.compose import build_tray, notifier_kind
from fluxmon.core.config import Config
from fluxmon.core.engine import Engine
from fluxmon.tray.app import Message
from harness.snapshots import failed_snapshot, push_of


def main() -> int:
    root = Path(sys.argv[1])
    engine = Engine(kubeconfig=str(root / "no-kubeconfig"), state_dir=root / "state", spool_dir=root / "spool")
    app = build_tray(engine, config=Config(), backend="gtk", icon_dir=root / "icons", notifier=notifier_kind())

    class Cue(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("tray started"):
                app.quit()
            elif record.getMessage() == "tray stopping":
                app.post(Message.SNAPSHOT, push_of(failed_snapshot(id="late")))

    logging.basicConfig(level=logging.INFO, format="fluxmon: %(message)s")
    logging.getLogger("fluxmon.tray").addHandler(Cue())
    return app.run()


if __name__ == "__main__":
    sys.exit(main())
