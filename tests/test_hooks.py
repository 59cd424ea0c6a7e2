"""Push capture with real git: real pushes to local (and HTTP) bare remotes through the installed hooks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from harness.gitrepos import Repos, make_repos
from tests.githttp import git_http_server

SECRET = "s3cret-token"


HOOKS_PATHS = pytest.mark.parametrize("hooks_path", ["", ".githooks"], ids=["git-dir-hooks", "core.hooksPath"])


@pytest.fixture(params=["", ".githooks"], ids=["git-dir-hooks", "core.hooksPath"])
def repos(tmp_path: Path, request: pytest.FixtureRequest) -> Repos:
    """Every test that takes `repos` runs twice: with .git/hooks, and with core.hooksPath set."""
    return make_repos(tmp_path, hooks_path=request.param)


def test_a_push_becomes_exactly_one_session_file(repos: Repos) -> None:
    old = repos.git("rev-parse", "HEAD").stdout.strip()
    new = repos.commit("apps/production/web.yaml", "kind: Deployment\n", "Scale web to 3 replicas")
    result = repos.push("origin", "main")
    assert result.returncode == 0, result.stderr
    (session,) = repos.sessions()
    assert session["schema"] == "fluxmon.session/v1"
    assert session["repo"] == str(repos.work.resolve())
    assert session["remote"] == {"name": "origin", "url": str(repos.remote)}
    assert session["ref"] == {
        "kind": "branch",
        "name": "main",
        "remote_ref": "refs/heads/main",
        "old": old,
        "new": new,
        "forced": False,
    }
    assert (session["confirmed"], session["confirmed_by"]) == (True, "remote-tracking-ref")
    assert session["changes"] == {"paths": ["apps/production/web.yaml"], "count": 1}
    assert session["commit"] == {"subject": "Scale web to 3 replicas", "author": "Ada Lovelace <ada@example.com>"}
    assert session["config"]["timeout_seconds"] == 300.0
    assert not list((repos.work / ".git" / "fluxmon" / "pending").iterdir()), "pending record left behind"


def test_the_spool_is_private(repos: Repos) -> None:
    repos.commit("a.yaml", "a: 1\n", "a")
    repos.push("origin", "main")
    assert stat.S_IMODE(repos.spool.stat().st_mode) == 0o700
    (path,) = repos.spool.glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_rejected_push_produces_no_session(repos: Repos, tmp_path: Path) -> None:
    other = tmp_path / "other"
    repos.git("clone", "-q", str(repos.remote), str(other), cwd=tmp_path)
    repos.commit("b.yaml", "b: 1\n", "someone else's change", cwd=other)
    repos.git("push", "-q", "origin", "main", cwd=other)  # no hooks in that clone
    repos.commit("c.yaml", "c: 1\n", "my change")
    result = repos.push("origin", "main")
    assert result.returncode != 0
    assert "rejected" in result.stderr
    assert repos.sessions() == []
    assert "git did not update refs/remotes/origin/main" in (repos.work / ".git/fluxmon/hook.log").read_text()


def test_a_remote_hook_refusing_the_push_produces_no_session(repos: Repos) -> None:
    refusing = repos.remote / "hooks" / "pre-receive"
    refusing.write_text("#!/bin/sh\necho 'policy: no pushes today' >&2\nexit 1\n")
    refusing.chmod(0o755)
    repos.commit("d.yaml", "d: 1\n", "change")
    result = repos.push("origin", "main")
    assert result.returncode != 0
    assert repos.sessions() == []


def test_dry_run_and_delete_produce_no_session(repos: Repos) -> None:
    repos.commit("e.yaml", "e: 1\n", "change")
    assert repos.push("--dry-run", "origin", "main").returncode == 0
    assert repos.sessions() == []
    repos.git("push", "-q", "origin", "main:feature")  # make a branch to delete (the confirmer is awaited next)
    repos.settle()
    for path in repos.spool.glob("*.json"):
        path.unlink()
    assert repos.push("--delete", "origin", "feature").returncode == 0
    assert repos.sessions() == []


def test_two_branches_in_one_push_give_two_sessions_of_one_push(repos: Repos) -> None:
    main_sha = repos.commit("f.yaml", "f: 1\n", "on main")
    repos.git("checkout", "-q", "-b", "staging")
    staging_sha = repos.commit("g.yaml", "g: 1\n", "on staging")
    repos.push("origin", "main", "staging")
    sessions = sorted(repos.sessions(), key=lambda s: s["ref"]["name"])
    assert [(s["ref"]["name"], s["ref"]["new"]) for s in sessions] == [("main", main_sha), ("staging", staging_sha)]
    assert sessions[0]["push_id"] == sessions[1]["push_id"]
    assert sessions[1]["ref"]["old"] == "0" * 40
    assert sessions[1]["changes"] == {"paths": None, "count": None}  # a new branch has no old tip


def test_a_force_push_is_marked_forced(repos: Repos) -> None:
    repos.commit("h.yaml", "h: 1\n", "first try")
    repos.push("origin", "main")
    for path in repos.spool.glob("*.json"):
        path.unlink()
    repos.git("commit", "-q", "--amend", "-m", "second try")
    assert repos.push("--force", "origin", "main").returncode == 0
    (session,) = repos.sessions()
    assert session["ref"]["forced"] is True


def test_a_tag_push_is_recorded_as_a_tag_and_confirmed_by_the_remote(repos: Repos) -> None:
    repos.git("tag", "v1.0.0")
    repos.push("origin", "v1.0.0")
    (session,) = repos.sessions()
    assert (session["ref"]["kind"], session["ref"]["name"]) == ("tag", "v1.0.0")
    assert (session["confirmed"], session["confirmed_by"]) == (True, "ls-remote")


def test_a_push_to_a_bare_url_is_confirmed_by_ls_remote(repos: Repos) -> None:
    sha = repos.commit("i.yaml", "i: 1\n", "by url")
    repos.push(str(repos.remote), "HEAD:main")
    (session,) = repos.sessions()
    assert session["remote"] == {"name": "", "url": str(repos.remote)}
    assert (session["ref"]["new"], session["confirmed_by"]) == (sha, "ls-remote")


@HOOKS_PATHS
def test_an_existing_user_hook_is_chained_and_can_still_refuse(tmp_path: Path, hooks_path: str) -> None:
    bare = make_repos(tmp_path, install_hooks=False, hooks_path=hooks_path)
    hook = bare.hooks / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "user-hook.log"
    hook.write_text(f'#!/bin/sh\necho "$1 $2" >> {log}\ncat >> {log}\n[ ! -e {tmp_path}/refuse ]\n')
    hook.chmod(0o755)
    original = hook.read_bytes()
    bare.fluxmon("hook", "install")
    assert (hook.parent / "pre-push.fluxmon-chained").read_bytes() == original
    sha = bare.commit("j.yaml", "j: 1\n", "chained")
    assert bare.push("origin", "main").returncode == 0
    assert f"refs/heads/main {sha} refs/heads/main" in log.read_text()  # same arguments and stdin
    assert len(bare.sessions()) == 1
    (tmp_path / "refuse").touch()
    bare.commit("k.yaml", "k: 1\n", "refused by the user's hook")
    result = bare.push("origin", "main")
    assert result.returncode != 0  # the user's hook's exit status is kept
    assert len(bare.sessions()) == 1


def test_hooks_follow_core_hooks_path(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    repos.git("config", "core.hooksPath", ".githooks")
    repos.fluxmon("hook", "install")
    assert (repos.work / ".githooks" / "pre-push").exists()
    assert not (repos.work / ".git" / "hooks" / "pre-push").exists()
    repos.commit("l.yaml", "l: 1\n", "via hooksPath")
    repos.push("origin", "main")
    assert len(repos.sessions()) == 1
    assert "installed at " + str(repos.work / ".githooks" / "pre-push") in repos.fluxmon("hook", "status").stdout


def test_install_is_idempotent_and_uninstall_restores_exactly(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    hooks = repos.work / ".git" / "hooks"
    user_hook = hooks / "pre-push"
    user_hook.write_text("#!/bin/sh\nexit 0\n")
    user_hook.chmod(0o750)
    before = (user_hook.read_bytes(), user_hook.stat().st_mode, user_hook.stat().st_mtime_ns)
    first = repos.fluxmon("hook", "install").stdout
    second = repos.fluxmon("hook", "install").stdout
    assert "chained" not in second
    assert second.count("already installed") == 1, first + second
    repos.fluxmon("hook", "uninstall")
    assert (user_hook.read_bytes(), user_hook.stat().st_mode, user_hook.stat().st_mtime_ns) == before
    assert sorted(p.name for p in hooks.iterdir() if "fluxmon" in p.name) == []


def test_a_commit_runs_no_hook_of_fluxmons(repos: Repos) -> None:
    # git runs reference-transaction twice on every ref update of every command: fluxmon installs none, so a
    # commit, a checkout or a rebase costs what it costs without fluxmon.
    repos.commit("r.yaml", "r: 1\n", "a commit")
    assert sorted(path.name for path in repos.hooks.iterdir() if not path.name.endswith(".sample")) == ["pre-push"]


def test_install_removes_the_reference_transaction_hook_of_an_older_fluxmon(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    hooks = repos.work / ".git" / "hooks"
    users = b"#!/bin/sh\nexit 0\n"
    (hooks / "reference-transaction.fluxmon-chained").write_bytes(users)
    (hooks / "reference-transaction").write_text("#!/bin/sh\n# fluxmon-hook 2: confirms pushes\nexit 0\n")
    (hooks / "pre-push").write_text("#!/bin/sh\n# fluxmon-hook 2: records this push\nexit 0\n")
    (hooks / "pre-push").chmod(0o755)
    status = repos.fluxmon("hook", "status").stdout
    left = f"reference-transaction: {hooks / 'reference-transaction'} is left by an older fluxmon;"
    assert f"{left} 'fluxmon hook install' removes it" in status
    assert "an older fluxmon's, 'fluxmon hook install' updates it" in status
    output = repos.fluxmon("hook", "install").stdout
    assert "reference-transaction: removed; restored the hook it had chained" in output
    assert (hooks / "reference-transaction").read_bytes() == users
    assert not (hooks / "reference-transaction.fluxmon-chained").exists()
    assert "older" not in repos.fluxmon("hook", "status").stdout
    sha = repos.commit("s.yaml", "s: 1\n", "after the upgrade")
    repos.push("origin", "main")
    assert [(s["ref"]["new"], s["confirmed_by"]) for s in repos.sessions()] == [(sha, "remote-tracking-ref")]


def test_global_install_keeps_each_repos_own_hooks(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    marker = tmp_path / "repo-hook-ran"
    own = repos.work / ".git" / "hooks" / "pre-push"
    own.write_text(f"#!/bin/sh\ntouch {marker}\n")
    own.chmod(0o755)
    repos.fluxmon("hook", "install", "--global")
    hooks_path = repos.git("config", "--global", "core.hooksPath").stdout.strip()
    assert Path(hooks_path, "pre-push").exists()
    repos.commit("m.yaml", "m: 1\n", "global")
    repos.push("origin", "main")
    assert marker.exists()
    assert len(repos.sessions()) == 1
    repos.fluxmon("hook", "uninstall", "--global")
    assert repos.git("config", "--global", "core.hooksPath", check=False).returncode == 1


def test_a_broken_installation_never_fails_the_push(tmp_path: Path) -> None:
    repos = make_repos(tmp_path, install_hooks=False)
    repos.fluxmon("hook", "install")
    hook = repos.work / ".git" / "hooks" / "pre-push"
    hook.write_text(hook.read_text().replace("FLUXMON_PYTHON=", "FLUXMON_PYTHON=/gone"))
    repos.commit("n.yaml", "n: 1\n", "python is gone")
    result = repos.push("origin", "main")
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("fluxmon:")]
    assert len(lines) == 1
    assert "run 'fluxmon hook install' again" in lines[0]
    assert repos.sessions() == []


def test_commits_with_nothing_pending_leave_no_trace(repos: Repos) -> None:
    repos.commit("o.yaml", "o: 1\n", "just a commit")
    repos.git("checkout", "-q", "-b", "topic")
    assert not (repos.work / ".git" / "fluxmon" / "pending").exists() or not any(
        (repos.work / ".git" / "fluxmon" / "pending").iterdir()
    )
    assert repos.sessions() == []


def test_credentials_in_remote_urls_never_appear(repos: Repos) -> None:
    with git_http_server(repos.root, user="bot", password=SECRET) as base:
        url = f"{base.replace('http://', f'http://bot:{SECRET}@')}/remote.git"
        repos.git("remote", "set-url", "origin", url)
        repos.git("fetch", "-q", "origin")
        repos.commit("p.yaml", "p: 1\n", "over http")
        named = repos.push("origin", "main")
        assert named.returncode == 0, named.stderr
        repos.commit("q.yaml", "q: 1\n", "by url")
        by_url = repos.push(url, "HEAD:main")
        assert by_url.returncode == 0, by_url.stderr
    sessions = repos.sessions()
    assert len(sessions) == 2
    redacted = f"{base.replace('http://', 'http://***@')}/remote.git"
    assert {s["remote"]["url"] for s in sessions} == {redacted}
    assert {s["confirmed_by"] for s in sessions} == {"remote-tracking-ref", "ls-remote"}
    status = repos.fluxmon("hook", "status")
    everything = [named.stdout, named.stderr, by_url.stdout, by_url.stderr, status.stdout, status.stderr]
    everything += [p.read_text() for p in repos.spool.rglob("*.json")]
    everything += [p.read_text() for p in (repos.work / ".git" / "fluxmon").rglob("*") if p.is_file()]
    assert not [text for text in everything if SECRET in text]
