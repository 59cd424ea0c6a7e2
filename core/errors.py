"""The project's own errors.

Every failure a user can meet is raised as one of these, with a short title and a message that says what to do,
so that the CLI, the tray and the notifications can show it without knowing where it came from. Library
exceptions are translated once, at the edge that calls the library, and chained with ``raise ... from exc``.
"""

from __future__ import annotations


class FluxmonError(Exception):
    """Base of every error a user may see; `title` is a headline, `message` what happened and what to do."""

    title = "Flux Push Monitor error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class InputError(FluxmonError):
    """Input that cannot be read: malformed YAML or JSON, a missing file."""

    title = "Cannot read input"


class ConfigError(FluxmonError):
    """A config file that is invalid; the message names the file and the key."""

    title = "Invalid configuration"


class SpoolError(FluxmonError):
    """The spool directory is unsafe to use (a symlink, another user's) or cannot be created."""

    title = "Spool directory unusable"


class GitError(FluxmonError):
    """A git command failed, or the folder is not a git repository."""

    title = "git failed"
