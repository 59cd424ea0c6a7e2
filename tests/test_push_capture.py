"""How pushes are captured cheaply without losing one: one shared confirmer per repo, started by pre-push only when
none is running, the remote-tracking refs' reflogs instead of a reference-transaction hook, and credentials kept
in memory.

Real git, the real installed hooks, real pushes to local bare remotes; the confirmer runs as pre-push starts it,
or in this process where a test plays a confirmer that is already running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxmon.core.gitpush import CONFIRMER_FILE, MAX_WAIT_FOR_PUSH_SECONDS, serve_pending
from harness.gitrepos import Repos, make_repos
from harness.processes import children, wait_for_children

SECRET = "t0ken-for-the-test"
UNREACHABLE = "127.0.0.1:1"  # a closed port: ls-remote fails at once, and the push it confirms stays unconfirmed


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return make_repos(tmp_path)


def _state(repos: Repos) -> Path:
    return repos.work / ".git" / "fluxmon"


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]


def _everything_written(repos: Repos) -> list[Path]:
    places = [_state(repos), repos.spool]
    return [path for place in places if place.exists() for path in place.rglob("*") if path.is_file()]


# --- which push was accepted: the reflog of the remote-tracking ref ------------------------------------------------


def test_an_earlier_commit_pushed_again_and_refused_gives_no_session(repos: Repos) -> None:
    # origin/main's reflog holds an update by push to `first` from the first push: it must not confirm the third
    # push, of the same commit, which the remote refuses. Only an update from the sha the remote had counts.
    first = repos.commit("a.yaml", "a: 1\n", "first")
    repos.push("origin", "main")
    repos.commit("b.yaml", "b: 1\n", "second")
    repos.push("origin", "main")
    assert len(repos.sessions()) == 2
    refusing = repos.remote / "hooks" / "pre-receive"
    refusing.write_text("#!/bin/sh\necho 'policy: no rewinds' >&2\nexit 1\n")
    refusing.chmod(0o755)
    repos.git("reset", "-q", "--hard", first)
    result = repos.push("--force", "origin", "main")
    assert result.returncode != 0
    assert len(repos.sessions()) == 2
    assert "rejected, or a dry run" in (_state(repos) / "hook.log").read_text()


def test_a_clone_that_keeps_no_reflog_is_confirmed_by_the_remote(repos: Repos) -> None:
    repos.git("config", "core.logAllRefUpdates", "false")
    (repos.work / ".git" / "logs").rename(repos.work / ".git" / "logs.away")
    sha = repos.commit("c.yaml", "c: 1\n", "no reflog here")
    assert repos.push("origin", "main").returncode == 0
    assert [(s["ref"]["new"], s["confirmed_by"]) for s in repos.sessions()] == [(sha, "ls-remote")]


# --- one confirmer per repo ------------------------------------------------------------------------------------------


def test_pre_push_starts_no_confirmer_while_one_is_running(
    repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process that pre-push must take for the repo's running confirmer: named in the confirmer file by its pid
    # and start time. pre-push leaves the record to it, and the record waits until that confirmer reads it.
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        _state(repos).mkdir(exist_ok=True)
        (_state(repos) / CONFIRMER_FILE).write_text(f"{running.pid} {_start_time(running.pid)}\n")
        sha = repos.commit("d.yaml", "d: 1\n", "while a confirmer runs")
        before = children()
        assert repos.git("push", "-q", "origin", "main").returncode == 0
        started = children() - before
        assert not wait_for_children(timeout=30, ignore=before | {running.pid})
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=30)
    assert started == set(), "pre-push started a second confirmer"
    assert repos.sessions() == []
    (record,) = (_state(repos) / "pending").glob("*.push")
    # The running confirmer (this process now, started from another shell) reads it, and spools the session
    # where the pushing shell's environment says, not its own.
    monkeypatch.setenv("FLUXMON_SPOOL_DIR", str(tmp_path / "the-confirmers-own-spool"))
    (written,) = serve_pending(record.parent)
    assert written.parent == repos.spool
    assert json.loads(written.read_text())["ref"]["new"] == sha
    assert list((_state(repos) / "pending").iterdir()) == []


@pytest.mark.parametrize("state", ["reused-pid", "gone"])
def test_a_confirmer_file_left_by_a_dead_confirmer_does_not_stop_confirming(repos: Repos, state: str) -> None:
    # A confirmer killed before it could remove its file: its pid may now be another process's (this one's,
    # here, which started at another time), or no process's at all.
    ended = subprocess.Popen(["true"])
    ended.wait(timeout=30)
    pid = os.getpid() if state == "reused-pid" else ended.pid
    _state(repos).mkdir(exist_ok=True)
    (_state(repos) / CONFIRMER_FILE).write_text(f"{pid} 1\n")
    sha = repos.commit("e.yaml", "e: 1\n", "after a confirmer died")
    repos.push("origin", "main")
    assert [s["ref"]["new"] for s in repos.sessions()] == [sha]


def test_records_left_by_a_confirmer_that_died_long_ago_are_dropped_not_confirmed(repos: Repos) -> None:
    pending = _state(repos) / "pending"
    pending.mkdir(parents=True)
    sha = repos.git("rev-parse", "HEAD").stdout.strip()
    ended = subprocess.Popen(["true"])
    ended.wait(timeout=30)
    record = f"fluxmon-pending 3\nremote origin\nurl {repos.remote}\nrepo {repos.work}\n"
    record += f"ref refs/heads/main {sha} refs/heads/main {'0' * 40}\nend\n"
    stale = [pending / f"{ended.pid}-1.push", pending / f"{ended.pid}-2.own.push"]
    an_hour_ago = time.time() - MAX_WAIT_FOR_PUSH_SECONDS - 60
    for path in stale:
        path.write_text(record)
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert serve_pending(pending) == []
    assert list(pending.iterdir()) == []


def test_a_record_cut_short_is_not_confirmed(repos: Repos) -> None:
    # A hook interrupted while writing (Ctrl-C during the push): what it wrote may end inside a sha.
    pending = _state(repos) / "pending"
    pending.mkdir(parents=True)
    sha = repos.git("rev-parse", "HEAD").stdout.strip()
    ended = subprocess.Popen(["true"])
    ended.wait(timeout=30)
    (pending / f"{ended.pid}-1.push").write_text(
        f"fluxmon-pending 3\nremote origin\nurl {repos.remote}\nrepo {repos.work}\nref refs/heads/main {sha[:20]}"
    )
    assert serve_pending(pending) == []
    assert list(pending.iterdir()) == []


# --- what pre-push starts, and what it writes ------------------------------------------------------------------------


def test_a_package_named_fluxmon_in_the_pushed_repo_is_never_run(repos: Repos, tmp_path: Path) -> None:
    # The confirmer runs in the repo's work tree: `python -m` would import a fluxmon/ found there first.
    marker = tmp_path / "the-repos-own-code-ran"
    package = repos.work / "fluxmon"
    (package / "hooks").mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (package / "__main__.py").write_text("")
    (package / "hooks" / "__init__.py").write_text("")
    (package / "hooks" / "confirm.py").write_text("")
    sha = repos.commit("f.yaml", "f: 1\n", "a repo with a fluxmon package of its own")
    repos.push("origin", "main")
    assert not marker.exists()
    assert [s["ref"]["new"] for s in repos.sessions()] == [sha]


def _run_pre_push(repos: Repos, url: str) -> subprocess.Popen[str]:
    """Run the installed pre-push as git would, under a parent that stays until told to go: the confirmer waits
    for that parent, so what is on disk while the push is in flight can be looked at. Returns once it has run."""
    sha = repos.git("rev-parse", "HEAD").stdout.strip()
    refs = repos.root / "refs-on-stdin"
    refs.write_text(f"refs/heads/main {sha} refs/heads/main {'0' * 40}\n")
    parent = subprocess.Popen(
        ["sh", "-c", '"$0" "$@" <"$REFS"; echo recorded; read -r _', str(repos.hooks / "pre-push"), url, url],
        cwd=repos.work,
        env={**repos.env, "REFS": str(refs)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline() == "recorded\n"
    return parent


def _let_go(repos: Repos, parent: subprocess.Popen[str]) -> None:
    parent.communicate("\n", timeout=30)
    repos.settle()


@pytest.mark.parametrize(
    "url",
    [
        f"http://{SECRET}@{UNREACHABLE}/fleet.git",
        f"https://bot:{SECRET}@{UNREACHABLE}/fleet.git",
        f"HTTPS://{SECRET}@{UNREACHABLE}/fleet.git",
        f"ssh://git:{SECRET}@{UNREACHABLE}/fleet.git",
        f"git+ssh://git:{SECRET}@{UNREACHABLE}/fleet.git",
    ],
)
def test_a_url_with_credentials_never_reaches_the_disk(repos: Repos, url: str) -> None:
    parent = _run_pre_push(repos, url)
    try:
        during = _everything_written(repos)
        assert [path.name for path in during if path.name.endswith(".own.push")], "no record of its own"
        assert not [path for path in during if SECRET in path.read_text(errors="replace")]
    finally:
        _let_go(repos, parent)
    (session,) = repos.sessions()
    assert SECRET not in session["remote"]["url"]
    assert session["confirmed"] is False  # the remote could not be asked: the monitor confirms it later
    assert not [path for path in _everything_written(repos) if SECRET in path.read_text(errors="replace")]


def test_an_ssh_url_with_a_user_name_goes_to_the_shared_confirmer(repos: Repos) -> None:
    url = f"ssh://git@{UNREACHABLE}/fleet.git"  # a user name, no password: no credential (core/redact.py)
    parent = _run_pre_push(repos, url)
    try:
        (record,) = (_state(repos) / "pending").glob("*.push")
        assert not record.name.endswith(".own.push")
        assert f"url {url}\n" in record.read_text()
    finally:
        _let_go(repos, parent)
    assert [s["remote"]["url"] for s in repos.sessions()] == [url]


def test_the_confirmer_keeps_none_of_gits_output_open(repos: Repos, tmp_path: Path) -> None:
    # Whoever reads `git push`'s output (a script, an IDE) gets its end when git exits. A confirmer that held
    # a copy of git's stdout or stderr while it waits would hold that reader up. Looked at while the push is in
    # flight: the remote's pre-receive says it has started, then waits to be let go.
    started, go = tmp_path / "started", tmp_path / "go"
    os.mkfifo(started)
    os.mkfifo(go)
    hold = repos.remote / "hooks" / "pre-receive"
    hold.write_text(f"#!/bin/sh\ncat >/dev/null\necho started >{started}\nread -r _ <{go}\n")
    hold.chmod(0o755)
    repos.commit("g.yaml", "g: 1\n", "watched while in flight")
    read_end, write_end = os.pipe()
    push = subprocess.Popen(
        ["git", "push", "-q", "origin", "main"], cwd=repos.work, env=repos.env, stdout=write_end, stderr=write_end
    )
    os.close(write_end)
    try:
        assert started.read_text() == "started\n"
        confirmer = int((_state(repos) / CONFIRMER_FILE).read_text().split()[0])
        fds = Path(f"/proc/{confirmer}/fd")
        held = [str(fd.readlink()) for fd in fds.iterdir()]
        assert f"pipe:[{os.fstat(read_end).st_ino}]" not in held
    finally:
        go.write_text("go\n")
        assert push.wait(timeout=60) == 0
        os.close(read_end)
    repos.settle()
    assert len(repos.sessions()) == 1
