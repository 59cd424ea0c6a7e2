"""The hooks' background confirmer: `python -m fluxmon.hooks.confirm`, which pre-push starts.

A module of its own, so that a push starts no more Python than confirming needs: `fluxmon hook confirm` would
import the CLI, and with it the engine and the kubernetes client, ten times what confirming takes. Even that is
imported only once the `git push` process has exited, so that the push never shares the CPU with it.

    python -m fluxmon.hooks.confirm PENDING_DIR --git-pid PID
        the repo's shared confirmer: confirms every record in the folder as its push ends (core/gitpush.py)
    python -m fluxmon.hooks.confirm --record FILE --git-pid PID
        a push's own confirmer, for a remote whose URL holds credentials: pre-push passes the remote and its URL
        in FLUXMON_PUSH_REMOTE and FLUXMON_PUSH_URL, never on disk
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Sequence

USAGE = "usage: python -m fluxmon.hooks.confirm (PENDING_DIR | --record FILE) --git-pid PID"
MAX_WAIT_FOR_PUSH_MS = 3_600_000
"""core.gitpush.MAX_WAIT_FOR_PUSH_SECONDS, which is not imported before the push has ended."""


def wait_for_git(pid: int) -> None:
    """Block until the `git push` process exits (a pidfd: an event, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(MAX_WAIT_FOR_PUSH_MS)
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    own = len(args) == 4 and args[0] == "--record"
    shared = len(args) == 3 and not args[0].startswith("-")
    if not (own or shared) or args[-2] != "--git-pid" or not args[-1].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    os.setsid()  # out of the terminal's process group, so a Ctrl-C after the push does not kill us
    git_pid = int(args[-1])
    wait_for_git(git_pid)

    import logging
    from pathlib import Path

    from fluxmon.core.gitpush import confirm_push, serve_pending
    from fluxmon.core.paths import spool_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    if own:
        # git's children need neither the remote nor its URL (which may hold credentials).
        remote = os.environ.pop("FLUXMON_PUSH_REMOTE", "")
        url = os.environ.pop("FLUXMON_PUSH_URL", "")
        written = confirm_push(Path(args[1]), git_pid=git_pid, spool_dir=spool_dir(), remote=remote, url=url)
    else:
        written = serve_pending(Path(args[0]).resolve())
    for path in written:
        logging.getLogger("fluxmon.hooks").info("spooled %s", path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
