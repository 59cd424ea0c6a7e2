"""Exit statuses: part of the interface, for scripts and CI.

0  success (for `assess`: nothing failed; for `wait`/`watch`: deployed)
1  a Flux object failed
2  usage, input, config or cluster error
3  `wait`/`watch`: timed out
4  `wait`/`watch`: no Flux source follows this remote and branch
5  `wait`/`watch`: superseded (a force push rewrote the commit away)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
EXIT_NOT_DEPLOYED = 4
EXIT_SUPERSEDED = 5
"""Flux will never apply the commit (the branch's history no longer holds it), and nothing failed: not 1."""
