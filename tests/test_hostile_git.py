"""Pushes as people really make them: back to back, overtaken, force-pushed, tagged, mirrored, to a URL.

Real git, the real hooks, real pushes to real bare repositories (and to a real smart-HTTP remote that wants a
password); where a cluster is needed, the simulated API server with the simulated Flux controllers.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.githttp import git_http_server
from tests.gitrepos import Repos, isolated_env, make_repos

SECRET = "hunter2-token"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return make_repos(tmp_path)


def _everything_written(repos: Repos) -> list[Path]:
    """Every file the hooks and their confirmer may have written: the pending folder, the log, the spool."""
    places = [repos.work / ".git" / "fluxmon", repos.spool]
    return [path for place in places if place.exists() for path in place.rglob("*") if path.is_file()]


# --- 1. back-to-back pushes ----------------------------------------------------------------------------------------


def test_twenty_pushes_in_a_row_give_twenty_sessions(repos: Repos) -> None:
    pushed = []
    for number in range(20):
        pushed.append(repos.commit("apps/web.yaml", f"replicas: {number}\n", f"change {number}"))
        # As a person pushes: one after the other, without waiting for anything of fluxmon's.
        result = repos.git("push", "-q", "origin", "main", check=False)
        assert result.returncode == 0, result.stderr
    repos.settle()
    sessions = repos.sessions()
    assert sorted(s["ref"]["new"] for s in sessions) == sorted(pushed)
    assert {s["confirmed_by"] for s in sessions} == {"remote-tracking-ref"}
    log = repos.work / ".git" / "fluxmon" / "hook.log"
    assert "rejected" not in (log.read_text() if log.exists() else "")


def test_two_git_processes_pushing_at_once_each_confirm_their_own(repos: Repos) -> None:
    first = repos.commit("a.yaml", "a: 1\n", "on main")
    repos.git("branch", "other")
    repos.git("checkout", "-q", "other")
    second = repos.commit("b.yaml", "b: 1\n", "on other")
    pushes = [
        subprocess.Popen(["git", "push", "-q", "origin", ref], cwd=repos.work, env=repos.env)
        for ref in (f"{first}:refs/heads/main", "other")
    ]
    assert [push.wait(timeout=60) for push in pushes] == [0, 0]
    repos.settle()
    assert sorted((s["ref"]["name"], s["ref"]["new"]) for s in repos.sessions()) == [
        ("main", first),
        ("other", second),
    ]


# --- 3. annotated tags ---------------------------------------------------------------------------------------------


def test_an_annotated_tag_session_carries_the_commit_not_the_tag_object(repos: Repos) -> None:
    commit = repos.commit("c.yaml", "c: 1\n", "release")
    repos.git("tag", "-a", "-m", "release 1.0", "v1.0")
    tag_object = repos.git("rev-parse", "v1.0").stdout.strip()
    assert tag_object != commit
    assert repos.push("origin", "v1.0").returncode == 0
    (session,) = repos.sessions()
    assert (session["ref"]["kind"], session["ref"]["name"], session["ref"]["new"]) == ("tag", "v1.0", commit)
    assert (session["confirmed"], session["confirmed_by"]) == (True, "ls-remote")


# --- 4. pushurl ----------------------------------------------------------------------------------------------------


def test_a_push_to_a_pushurl_is_confirmed_against_that_url(repos: Repos, tmp_path: Path) -> None:
    # The fetch URL is a read mirror that lags; pushes go to the primary. A tag has no tracking ref, so the
    # confirmer asks the remote, and must ask the one that was pushed to.
    primary = tmp_path / "primary.git"
    repos.git("clone", "-q", "--bare", str(repos.remote), str(primary), cwd=tmp_path)
    repos.git("config", "remote.origin.pushurl", str(primary))
    commit = repos.commit("d.yaml", "d: 1\n", "to the primary")
    repos.git("tag", "v2")
    assert repos.push("origin", "v2").returncode == 0
    (session,) = repos.sessions()
    assert session["ref"]["new"] == commit
    assert (session["confirmed"], session["confirmed_by"]) == (True, "ls-remote")
    assert session["remote"]["url"] == str(primary)


# --- 5. push --mirror ----------------------------------------------------------------------------------------------


def test_a_mirror_push_makes_no_sessions_for_remote_tracking_refs(repos: Repos, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror.git"
    repos.git("init", "-q", "--bare", str(mirror), cwd=tmp_path)
    repos.git("remote", "add", "backup", str(mirror))
    commit = repos.commit("e.yaml", "e: 1\n", "mirrored")
    assert repos.push("--mirror", "backup").returncode == 0
    sessions = repos.sessions()
    assert [s["ref"]["remote_ref"] for s in sessions] == ["refs/heads/main"]
    assert sessions[0]["ref"]["new"] == commit


# --- 6. a push that sends nothing, and credentials ------------------------------------------------------------------


def test_a_push_that_sends_nothing_prints_writes_and_leaves_nothing(repos: Repos) -> None:
    result = repos.push("origin", "main")  # already up to date
    assert result.returncode == 0
    assert "fluxmon" not in result.stderr + result.stdout
    assert _everything_written(repos) == []


def test_a_push_refused_locally_prints_writes_and_leaves_nothing(repos: Repos, tmp_path: Path) -> None:
    other = tmp_path / "other"
    repos.git("clone", "-q", str(repos.remote), str(other), cwd=tmp_path)
    repos.commit("f.yaml", "f: 1\n", "someone else's change", cwd=other)
    repos.git("push", "-q", "origin", "main", cwd=other)
    repos.git("fetch", "-q", "origin")  # git now knows, before pushing anything, that this push is not a fast-forward
    for path in _everything_written(repos):
        path.unlink()
    repos.commit("g.yaml", "g: 1\n", "my change")
    result = repos.push("origin", "main")
    assert result.returncode != 0
    assert "rejected" in result.stderr
    assert "fluxmon" not in result.stderr
    assert _everything_written(repos) == []


def test_no_credential_reaches_the_disk_during_or_after_a_push(repos: Repos, tmp_path: Path) -> None:
    # The remote's own hook runs while the push is in flight, after pre-push has written its record: it looks
    # at every file fluxmon has written by then.
    seen = tmp_path / "seen-during-push"
    pending = repos.work / ".git" / "fluxmon"
    spy = repos.remote / "hooks" / "pre-receive"
    spy.write_text(
        f"#!/bin/sh\ncat >/dev/null\nfind {pending} {repos.spool} -type f -exec cat {{}} + >>{seen} 2>&1\nexit 0\n"
    )
    spy.chmod(0o755)
    with git_http_server(repos.root, user="bot", password=SECRET) as base:
        url = f"{base.replace('http://', f'http://bot:{SECRET}@')}/remote.git"
        repos.commit("h.yaml", "h: 1\n", "by url with a token")
        by_url = repos.push(url, "HEAD:main")
        assert by_url.returncode == 0, by_url.stderr
        repos.git("remote", "set-url", "origin", url)
        repos.commit("i.yaml", "i: 1\n", "by name")
        named = repos.push("origin", "main")
        assert named.returncode == 0, named.stderr
        repos.git("tag", "v3")
        tagged = repos.push(url, "v3")
        assert tagged.returncode == 0, tagged.stderr
    assert "fluxmon" in seen.read_text(), "the spy saw none of fluxmon's files: it proves nothing"
    assert SECRET not in seen.read_text()
    # The tag went to the URL: it is confirmed by asking that URL, credentials and all, which only memory held.
    assert sorted(s["confirmed_by"] for s in repos.sessions()) == ["ls-remote", "ls-remote", "remote-tracking-ref"]
    for path in _everything_written(repos):
        assert SECRET not in path.read_text(errors="replace"), path


class _OutputUntil:
    """Reads a child's output line by line, waiting on the pipe (select) with a deadline, never forever."""

    def __init__(self, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        self._timeout = timeout
        self._buffer = b""
        self.text = ""

    def until(self, wanted: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + self._timeout
        while True:
            while b"\n" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\n")
                line = raw.decode("utf-8", "replace")
                self.text += line + "\n"
                if wanted(line):
                    return line
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(remaining, 0))
            chunk = os.read(self._fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"not seen within {self._timeout:.0f}s; the output so far:\n{self.text}")
            self._buffer += chunk


# --- 19. scripts/fluxmon in the caller's directory -----------------------------------------------------------------


def test_scripts_fluxmon_runs_in_the_callers_directory(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    if not (REPO_ROOT / ".venv" / "bin" / "fluxmon").exists():
        pytest.skip("scripts/fluxmon needs the checkout's .venv (scripts/check creates it)")
    env = {**repos.env, "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "fluxmon"), "hook", "install"],
        cwd=repos.work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (repos.work / ".git" / "hooks" / "pre-push").exists()
    assert "fluxmon-hook" in (repos.work / ".git" / "hooks" / "pre-push").read_text()


# --- 20. fluxmon demo --keep follows the user's own pushes ----------------------------------------------------------


def test_demo_keep_follows_the_users_own_pushes(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path), "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-u", "-m", "fluxmon", "demo", "--fast", "--keep", "--headless"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = _OutputUntil(demo)
        line = output.until(lambda text: "still following pushes to" in text)
        work = Path(line.split("still following pushes to ")[1].split(";")[0])
        # The user's own shell: it never had the demo's FLUXMON_SPOOL_DIR.
        user_env = {k: v for k, v in env.items() if k != "FLUXMON_SPOOL_DIR"}
        target = work / "apps" / "web.yaml"
        target.write_text(target.read_text().replace("replicas: 3", "replicas: 4"))
        for args in (["commit", "-q", "-am", "my own change"], ["push", "-q", "origin", "main"]):
            subprocess.run(["git", *args], cwd=work, env=user_env, check=True, timeout=60, capture_output=True)
        mine = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=work,
            env=user_env,
            check=True,
            text=True,
            capture_output=True,
        ).stdout.strip()
        final = output.until(lambda text: text.strip().startswith((f"✔ {mine} ", f"✗ {mine} ", "◎ timed out")))
        assert f"► the hooks recorded the push of {mine} to main" in output.text
        assert final.strip().startswith(f"✔ {mine} deployed"), output.text
    finally:
        demo.terminate()
        demo.communicate(timeout=60)
        kept = list(tmp_path.glob("fluxmon-demo-*"))
        for folder in kept:
            shutil.rmtree(folder, ignore_errors=True)
