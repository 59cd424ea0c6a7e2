"""The hooks' background confirmer: `python -m fluxmon.hooks.confirm`, which pre-push starts.

A module of its own, so that a push starts no more Python than confirming needs: `fluxmon hook confirm` would
import the CLI, and with it the engine and the kubernetes client, ten times what confirming takes.

    python -m fluxmon.hooks.confirm PENDING_DIR
        the repo's shared confirmer: confirms every record in the folder as its push ends (core/gitpush.py)
    python -m fluxmon.hooks.confirm --record FILE --git-pid PID
        a push's own confirmer, for a remote whose URL holds credentials: pre-push passes the remote and its URL
        in FLUXMON_PUSH_REMOTE and FLUXMON_PUSH_URL, never on disk
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fluxmon.core.gitpush import confirm_push, serve_pending
from fluxmon.core.paths import spool_dir

USAGE = "usage: python -m fluxmon.hooks.confirm PENDING_DIR | --record FILE --git-pid PID"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    own = len(args) == 4 and args[0] == "--record" and args[2] == "--git-pid" and args[3].isdigit()
    if not own and len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    os.setsid()  # out of the terminal's process group, so a Ctrl-C after the push does not kill us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    if own:
        # git's children need neither the remote nor its URL (which may hold credentials).
        remote = os.environ.pop("FLUXMON_PUSH_REMOTE", "")
        url = os.environ.pop("FLUXMON_PUSH_URL", "")
        written = confirm_push(Path(args[1]), git_pid=int(args[3]), spool_dir=spool_dir(), remote=remote, url=url)
    else:
        written = serve_pending(Path(args[0]).resolve())
    for path in written:
        logging.getLogger("fluxmon.hooks").info("spooled %s", path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
