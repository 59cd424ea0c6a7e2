"""Reading a bare git repository the way source-controller's artifact would present it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

GIT_TIMEOUT_SECONDS = 30.0


class GitSourceError(Exception):
    """The repository or ref cannot be read; the message is in source-controller's words."""


def repo_path(url: str) -> Path:
    """The local repository a GitRepository URL names: `file:///srv/fleet.git` or a plain path."""
    if url.startswith("file://"):
        return Path(urlsplit(url).path)
    if "://" in url or (":" in url and not url.startswith("/")):
        raise GitSourceError("the simulator only follows local repositories (file://)")
    return Path(url)


def resolve(repo: Path, ref: str) -> str:
    """The commit sha a ref points at."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitSourceError as exc:
        raise GitSourceError(f"unable to resolve reference '{ref}': {exc}") from exc


def subject(repo: Path, sha: str) -> str:
    return _git(repo, "log", "-1", "--format=%s", sha).strip()


def read_tree(repo: Path, sha: str, path: str) -> dict[str, bytes] | None:
    """Every file under `path` at `sha`, by its path relative to the repo root; None when `path` does not exist."""
    prefix = path.strip("/")
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", sha, "--", prefix or ".")
    blobs = []
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, _, name = entry.partition("\t")
        if meta.split()[1] == "blob":
            blobs.append((name, meta.split()[2]))
    if not blobs:
        return None
    # One `cat-file --batch` process reads every blob: far cheaper than a git process per file.
    request = "".join(f"{object_id}\n" for _, object_id in blobs).encode()
    output = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=True,
        timeout=GIT_TIMEOUT_SECONDS,
    ).stdout
    files: dict[str, bytes] = {}
    offset = 0
    for name, _ in blobs:
        header_end = output.index(b"\n", offset)
        size = int(output[offset:header_end].split()[2])
        files[name] = output[header_end + 1 : header_end + 1 + size]
        offset = header_end + 1 + size + 1
    return files


def _git(repo: Path, *args: str) -> str:
    if not repo.exists():
        raise GitSourceError(f"repository not found: {repo}")
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        raise GitSourceError(result.stderr.strip() or f"git {args[0]} failed")
    return result.stdout
