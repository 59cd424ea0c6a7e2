"""Running git: one way, for the hooks' confirmer, the CLI and the ancestry worker alike.

Always an argument list (never a shell), never a prompt (a passphrase prompt could never be answered), the C
locale (so that messages can be read), a timeout, and git's own message (redacted) in the error.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from fluxmon.core.errors import GitError
from fluxmon.core.redact import redact_text

GIT_TIMEOUT_SECONDS = 10.0


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git child: no terminal prompt, the C locale, and `extra` (kept off the argv)."""
    return {**os.environ, **(extra or {}), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def run_git(
    args: Sequence[str], *, cwd: Path, timeout: float = GIT_TIMEOUT_SECONDS, env: Mapping[str, str] | None = None
) -> str:
    """Run git with an argument list and return stdout; raises GitError with git's own message.

    `env`: extra environment, for what must stay out of the argument list (which every local user can read).
    """
    env = git_env(env)
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from exc
    if result.returncode != 0:
        message = redact_text(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        raise GitError(f"git {args[0]} failed: {message or f'exit status {result.returncode}'}")
    return result.stdout
