"""Installing the git hooks into a repo (or for every repo) without breaking the hooks already there.

- The hooks directory is the one git itself uses: `git rev-parse --git-path hooks` honours `core.hooksPath`.
- A hook already present (a user's own, husky's, pre-commit's) is renamed to `<name>.fluxmon-chained` and run
  by ours first, with the same arguments and input; for pre-push its exit status is kept, so it can still
  refuse a push.
- Installing twice changes nothing; uninstalling renames the chained hook back, restoring exactly what was there.
- The `reference-transaction` hook that older versions installed is removed by `install` and `uninstall` alike
  (the hook it chained is put back): the confirmer reads the reflog instead, and git ran that hook twice on
  every ref update of every command.
- `--global` uses the global `core.hooksPath` if the user has one. If not, it creates one for fluxmon and sets
  it, and those hooks chain each repo's own `.git/hooks/<name>`, so that per-repo hooks keep working.
"""

from __future__ import annotations

import shlex
import stat
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from fluxmon.core.errors import FluxmonError, GitError
from fluxmon.core.git import run_git
from fluxmon.core.gitpush import SPOOL_CONFIG_KEY
from fluxmon.core.paths import config_dir

HOOK_NAMES = ("pre-push",)
RETIRED_HOOK_NAMES = ("reference-transaction",)
"""Hooks that an older fluxmon installed: removed wherever fluxmon installs or uninstalls its own."""
MARKER = "fluxmon-hook"
HOOK_VERSION = 3
"""The version in the marker line of the hooks this fluxmon installs (`# fluxmon-hook 3: ...`)."""
CHAINED_SUFFIX = ".fluxmon-chained"
SET_BY_US = ".fluxmon-set-hookspath"
"""Marks a global hooks directory whose core.hooksPath fluxmon set, so that uninstall unsets it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HookState:
    """What `hook status` reports for one hook file."""

    name: str
    path: Path
    ours: bool
    present: bool
    chained: Path | None
    current: bool = True
    """False for a hook of ours that an older fluxmon installed (`hook install` updates it)."""
    retired: bool = False
    """A hook that only an older fluxmon installed, no longer needed (`hook install` removes it)."""


def repo_hooks_dir(repo: Path) -> Path:
    """The hooks directory git uses for `repo`, honouring core.hooksPath; raises GitError outside a repo."""
    top = Path(run_git(["rev-parse", "--show-toplevel"], cwd=repo).strip())
    return (top / run_git(["rev-parse", "--git-path", "hooks"], cwd=top).strip()).resolve()


def global_hooks_dir() -> tuple[Path, bool]:
    """The global hooks directory, and whether it is one fluxmon would have to create and set."""
    try:
        configured = run_git(["config", "--global", "--get", "core.hooksPath"], cwd=Path.home()).strip()
    except GitError:
        configured = ""
    if configured:
        return Path(configured).expanduser().resolve(), False
    return config_dir() / "git-hooks", True


def install(
    *, repo: Path | None = None, global_: bool = False, python: str = sys.executable, spool_dir: Path | None = None
) -> list[str]:
    """Install both hooks; returns one line per action, for the user.

    `spool_dir`: a spool of the repo's own (git config fluxmon.spoolDir), for pushes made there from any shell;
    `fluxmon demo` uses it so that its sample repo reports to the demo, not to the user's tray.
    """
    messages = []
    if global_:
        directory, create = global_hooks_dir()
        chain_repo_hooks = create or (directory / SET_BY_US).exists()
        directory.mkdir(parents=True, exist_ok=True)
        if create:
            (directory / SET_BY_US).write_text("fluxmon set core.hooksPath to this directory\n", encoding="utf-8")
            run_git(["config", "--global", "core.hooksPath", str(directory)], cwd=Path.home())
            messages.append(f"set git's global core.hooksPath to {directory}; each repo's own hooks still run")
    else:
        directory = repo_hooks_dir(repo or Path.cwd())
        chain_repo_hooks = False
        directory.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        messages.append(_install_one(directory / name, _render(name, python=python, global_=chain_repo_hooks)))
    for name in RETIRED_HOOK_NAMES:
        if _is_ours(directory / name):
            messages.append(f"{_remove_one(directory / name)} (fluxmon no longer needs it)")
    if spool_dir is not None and not global_:
        run_git(["config", "--local", SPOOL_CONFIG_KEY, str(spool_dir)], cwd=repo or Path.cwd())
        messages.append(f"pushes from this repo go to the spool {spool_dir}")
    return messages


def uninstall(*, repo: Path | None = None, global_: bool = False) -> list[str]:
    """Remove our hooks and put back what they had replaced; returns one line per action."""
    directory = global_hooks_dir()[0] if global_ else repo_hooks_dir(repo or Path.cwd())
    messages = []
    for name in HOOK_NAMES:
        path = directory / name
        if not _is_ours(path):
            messages.append(f"{path}: not a fluxmon hook, left alone" if path.exists() else f"{path}: not installed")
            continue
        messages.append(_remove_one(path))
    for name in RETIRED_HOOK_NAMES:
        if _is_ours(directory / name):
            messages.append(_remove_one(directory / name))
    if not global_ and _safe_config(repo or Path.cwd(), SPOOL_CONFIG_KEY):
        run_git(["config", "--local", "--unset", SPOOL_CONFIG_KEY], cwd=repo or Path.cwd())
        messages.append("removed the repo's own spool setting")
    if global_ and (directory / SET_BY_US).exists():
        run_git(["config", "--global", "--unset", "core.hooksPath"], cwd=Path.home())
        (directory / SET_BY_US).unlink()
        messages.append("unset git's global core.hooksPath, which fluxmon had set")
    return messages


def status(*, repo: Path | None = None) -> list[HookState]:
    """The state of each hook in the repo's hooks directory (or the global one, outside a repo)."""
    try:
        directory = repo_hooks_dir(repo or Path.cwd())
    except GitError:
        directory = global_hooks_dir()[0]
    states = []
    for name in (*HOOK_NAMES, *RETIRED_HOOK_NAMES):
        path = directory / name
        chained = path.with_name(name + CHAINED_SUFFIX)
        retired = name in RETIRED_HOOK_NAMES
        if retired and not _is_ours(path):
            continue
        states.append(
            HookState(
                name=name,
                path=path,
                ours=_is_ours(path),
                present=path.exists(),
                chained=chained if chained.exists() else None,
                current=_is_ours(path, version=HOOK_VERSION),
                retired=retired,
            )
        )
    return states


def _safe_config(repo: Path, key: str) -> str:
    try:
        return run_git(["config", "--local", "--get", key], cwd=repo).strip()
    except GitError:
        return ""


def _remove_one(path: Path) -> str:
    """Remove one of our hooks, and put back the hook it chained, if any."""
    chained = path.with_name(path.name + CHAINED_SUFFIX)
    path.unlink()
    if chained.exists() or chained.is_symlink():
        chained.rename(path)
        return f"{path}: removed; restored the hook it had chained"
    return f"{path}: removed"


def _install_one(path: Path, content: str) -> str:
    chained = path.with_name(path.name + CHAINED_SUFFIX)
    if _is_ours(path):
        if path.read_text(encoding="utf-8") == content:
            return f"{path}: already installed"
        _write_executable(path, content)
        return f"{path}: updated"
    if path.exists() or path.is_symlink():
        if chained.exists() or chained.is_symlink():
            raise FluxmonError(
                f"{path} is not ours, and {chained.name} already exists; move one of them away and run again",
                title="Cannot install the git hook",
            )
        path.rename(chained)  # a rename keeps content, mode and times, so uninstall restores it exactly
        _write_executable(path, content)
        return f"{path}: installed; it runs the existing hook first (now {chained.name})"
    _write_executable(path, content)
    return f"{path}: installed"


def _write_executable(path: Path, content: str) -> None:
    temp = path.with_name(f".{path.name}.fluxmon-tmp")
    temp.write_text(content, encoding="utf-8")
    temp.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    temp.replace(path)


def _render(name: str, *, python: str, global_: bool) -> str:
    template = files("fluxmon.hooks").joinpath(name).read_text(encoding="utf-8")
    return template.replace("@PYTHON@", shlex.quote(python)).replace("@GLOBAL@", "1" if global_ else "0")


def _is_ours(path: Path, *, version: int | None = None) -> bool:
    """Whether `path` is a hook fluxmon installed (of that `version`, if given), by its marker line."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            head = handle.read(200)
    except OSError:
        return False
    return (MARKER if version is None else f"{MARKER} {version}:") in head
