"""Real git repositories for tests: a bare remote, a clone with the hooks installed, and an isolated home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.processes import children, wait_for_children


def isolated_env(root: Path) -> dict[str, str]:
    """An environment whose git and fluxmon see only `root`: no user or system git config, a private spool."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "FLUXMON_SPOOL_DIR": str(root / "spool"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "LC_ALL": "C",
    }


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    """A change to one file of a work tree: replace `old` (which must be there) with `new`."""

    def change(work: Path) -> None:
        file = work / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    return change


@dataclass
class Repos:
    """A bare `remote.git` and a clone `work` of it, sharing one isolated environment."""

    root: Path
    env: dict[str, str]
    elders: set[int] = field(default_factory=children)
    """The test process's children before these repos existed (a session's display server): not the hooks' to
    wait for, and never to be killed as a stuck confirmer."""

    @property
    def remote(self) -> Path:
        return self.root / "remote.git"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def hooks(self) -> Path:
        """The hooks folder git uses for the clone (core.hooksPath honoured)."""
        return (self.work / self.git("rev-parse", "--git-path", "hooks").stdout.strip()).resolve()

    @property
    def spool(self) -> Path:
        return Path(self.env["FLUXMON_SPOOL_DIR"])

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def fluxmon(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fluxmon", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def commit(self, path: str, content: str, message: str, *, cwd: Path | None = None) -> str:
        where = cwd or self.work
        target = where / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        self.git("add", path, cwd=where)
        self.git("commit", "-q", "-m", message, cwd=where)
        return self.git("rev-parse", "HEAD", cwd=where).stdout.strip()

    def push(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`git push ARGS`, then wait until the hook's background confirmer has finished."""
        result = self.git("push", *args, cwd=cwd, check=False)
        self.settle()
        return result

    def settle(self) -> None:
        stuck = wait_for_children(timeout=30, ignore=self.elders)
        assert not stuck, f"the confirmer did not finish: {stuck}"

    def sessions(self) -> list[dict[str, Any]]:
        files = sorted(self.spool.glob("*.json")) if self.spool.exists() else []
        return [json.loads(path.read_text(encoding="utf-8")) for path in files]


def make_repos(root: Path, *, install_hooks: bool = True, hooks_path: str = "") -> Repos:
    """A bare remote and a clone with one pushed commit; `hooks_path` sets core.hooksPath in the clone."""
    repos = Repos(root=root, env=isolated_env(root))
    repos.git("init", "-q", "--bare", "-b", "main", str(repos.remote), cwd=root)
    repos.git("clone", "-q", str(repos.remote), str(repos.work), cwd=root)
    repos.git("checkout", "-q", "-b", "main")
    if hooks_path:
        repos.git("config", "core.hooksPath", hooks_path)
    repos.commit("clusters/production/kustomization.yaml", "resources: []\n", "initial fleet")
    repos.git("push", "-q", "origin", "main")
    if install_hooks:
        repos.fluxmon("hook", "install")
    return repos
