"""Child-process bookkeeping for tests: wait for background processes by event, and catch leaks.

The pytest process is made a child subreaper, so processes that daemonise (the hook's confirmer, started in the
background by a hook whose shell has already exited) are re-parented to it rather than to init. Tests can then
wait for them to finish through a pidfd, which is an event, not a sleep, and a fixture can see any left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

from fluxmon.core.gitpush import wait_for_exit as exited

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children() -> set[int]:
    """The pids of this process's children (running or zombie), from every thread's /proc children list."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd) for a child to exit, then reap it; False if it is still running after `timeout`."""
    if not exited(pid, timeout):
        return False
    with contextlib.suppress(ChildProcessError):  # already reaped by its own Popen object
        os.waitpid(pid, os.WNOHANG)
    return True


def wait_for_children(timeout: float = 30.0, *, ignore: set[int] | None = None) -> list[str]:
    """Wait for every child not in `ignore` to exit; kill and return the ones still running after `timeout`."""
    stuck = []
    for pid in sorted(children() - (ignore or set())):
        if not wait_for_exit(pid, timeout):
            stuck.append(f"{pid}: {describe(pid)}")
            os.kill(pid, signal.SIGKILL)
            wait_for_exit(pid, 5)
    return stuck
