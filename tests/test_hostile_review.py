"""What a review of #10 and #11, using the product as its users do, found still wrong: each case failed before.

Real Flux objects (the corpus) and the simulator's own objects are the inputs; a real object is never malformed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxmon.cli import main
from fluxmon.core.engine import Engine
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.objects import is_flux_body, parse_flux_object
from fluxmon.core.push import PushSnapshot
from fluxmon.core.session import SessionSpec, SessionState, evaluate
from fluxmon.core.spool import parse_session
from fluxmon.core.store import push_record
from fluxmon.core.terminal import tree
from fluxmon.core.verdict import Phase, verdict
from fluxmon.demo import recorded
from fluxmon.sim.kustomize_controller import KustomizeController
from tests.fleet import SCALE_WEB, UNHEALTHY_WEB, Fleet, edit

CORPUS = Path(__file__).parent / "fixtures" / "flux-corpus"


def corpus_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for number, body in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if isinstance(body, dict) and is_flux_body(body):
                bodies.append((f"{path.name} document {number + 1} ({body['kind']})", body))
    return bodies


@pytest.mark.parametrize(("where", "body"), corpus_bodies(), ids=lambda value: value if isinstance(value, str) else "")
def test_a_real_flux_object_is_never_called_malformed(where: str, body: dict[str, Any]) -> None:
    """A HelmChart's `spec.chart` is the chart's name (a string); only a HelmRelease's is an object.

    Before, every `fluxmon wait` on the sample fleet printed `HelmChart/flux-system/apps-podinfo is malformed, read
    as empty where it is: spec.chart: expected an object, got a string`, and broke `watch`'s redraw with it.
    """
    assert parse_flux_object(body).problems == (), where


def test_a_helm_release_whose_chart_is_a_string_is_still_malformed() -> None:
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": "default"},
        "spec": {"chart": "podinfo"},
    }
    assert parse_flux_object(release).problems == ("spec.chart: expected an object, got a string",)


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_wait_on_a_push_rewritten_away_by_a_force_push_exits_superseded_not_failed(fleet: Fleet) -> None:
    """Exit 1 means "the deployment failed". A push that a force push replaced did not fail: it was superseded,
    and a CI job must be able to tell the two apart (before, `wait` exited 1 here, a status it documents as failed).
    """
    fleet.controllers.stop()  # both pushes land before Flux fetches
    before = fleet.git("rev-parse", "HEAD")
    first = fleet.commit_and_push(SCALE_WEB, "scale web")
    fleet.git("reset", "-q", "--hard", before)
    SCALE_WEB(fleet.work)
    fleet.git("commit", "-q", "-am", "scale web, reworded")
    fleet.git("push", "-q", "--force", "origin", "main")
    fleet.controllers.start()
    result = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--commit", first, "--timeout", "30s", "--reconcile",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "superseded: " in result.stderr, result.stderr
    assert result.returncode == 5, result.stderr


BREAK_REDIS = edit(
    "apps/redis.yaml", "  namespace: data\n", "  namespace: data\n  annotations:\n    sim.fluxmon.dev/simulate: fail\n"
)
FIX_REDIS = edit("apps/redis.yaml", "sim.fluxmon.dev/simulate: fail", "sim.fluxmon.dev/simulate: none")
"""Not by removing the annotation: the simulated kustomize-controller's apply keeps what it no longer applies."""


@pytest.mark.timings(install_seconds=0.3)
def test_the_push_that_fixes_a_stalled_release_is_followed_not_failed_at_once(fleet: Fleet) -> None:
    """helm-controller stalls a release once its retries are spent (RetriesExceeded), and tries again when its spec
    changes. The push that changes it is the usual answer to a stalled release: until the Kustomization that applies
    the release has applied that push, the stall is from before it. Before, `wait` failed the fix at once, in
    half a second, before Flux had even fetched it.
    """
    fleet.push(BREAK_REDIS, "Break redis")
    fleet.watcher.wait_for(
        lambda objs: any(
            c["type"] == "Stalled" and c["status"] == "True"
            for c in objs["HelmRelease/redis"]["status"].get("conditions", [])
        ),
        what="redis stalled",
    )
    fleet.commit_and_push(FIX_REDIS, "Fix redis")
    result = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "60s", "--reconcile",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.timings(install_seconds=0.3)
def test_a_push_that_leaves_a_stalled_release_as_it_was_still_fails(fleet: Fleet) -> None:
    """The other side of the rule above: once the Kustomization that applies it has applied the push, a stall
    the push did not touch stands, and fails the push (helm-controller will not try again)."""
    fleet.push(BREAK_REDIS, "Break redis")
    fleet.watcher.wait_for(
        lambda objs: any(
            c["type"] == "Stalled" and c["status"] == "True"
            for c in objs["HelmRelease/redis"]["status"].get("conditions", [])
        ),
        what="redis stalled",
    )
    fleet.commit_and_push(SCALE_WEB, "Scale web")
    result = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "60s", "--reconcile",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "✗ HelmRelease data/redis failed: RetriesExceeded" in result.stderr


def test_the_demo_names_the_tag_a_push_sent() -> None:
    """`fluxmon demo --keep` said "the hooks recorded the push of db163fd to " for `git push origin v1.0`."""
    session = {
        "schema": "fluxmon.session/v1",
        "id": "20261130T233458Z-17793-tag-8b8a3c11",
        "push_id": "20261130T233458Z-17793",
        "created_at": "2026-11-30T23:34:58Z",
        "repo": "/tmp/fleet",
        "remote": {"name": "origin", "url": "/tmp/fleet.git"},
        "ref": {"kind": "tag", "name": "v1.0", "remote_ref": "refs/tags/v1.0", "old": "0" * 40, "new": "db163fd2" * 5},
        "confirmed": True,
        "confirmed_by": "ls-remote",
        "changes": {"paths": [], "count": 0},
        "commit": {"subject": "release", "author": "A <a@example.com>"},
        "config": {},
    }
    assert recorded(parse_session(session)) == "► the hooks recorded the push of db163fd to v1.0"


VALUES_ERROR_AFTER_A_FAILED_UPGRADE = {
    # What the simulator wrote after a push added a missing valuesFrom to a release whose previous upgrade had
    # failed and been rolled back. helm-controller sets Ready=False ValuesError before any release action and
    # leaves the Released condition of the last action as it was (internal/controller/helmrelease_controller.go
    # `reconcileRelease`), so both are there.
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {"name": "podinfo", "namespace": "apps", "generation": 3},
    "spec": {"upgrade": {"remediation": {"retries": 2}}, "valuesFrom": [{"kind": "ConfigMap", "name": "values"}]},
    "status": {
        "conditions": [
            {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": "Fulfilling prerequisites",
             "observedGeneration": 3, "lastTransitionTime": "2026-11-30T23:40:44Z"},
            {"type": "Ready", "status": "False", "reason": "ValuesError", "observedGeneration": 3,
             "message": "could not resolve ConfigMap chart values reference 'apps/values' with key 'values.yaml': "
             'configmaps "values" not found', "lastTransitionTime": "2026-11-30T23:40:44Z"},
            {"type": "Released", "status": "False", "reason": "UpgradeFailed", "observedGeneration": 3,
             "message": "Helm upgrade failed for release apps/podinfo with chart podinfo@6.0.3: simulated failure",
             "lastTransitionTime": "2026-11-30T23:40:38Z"},
            {"type": "Remediated", "status": "True", "reason": "RollbackSucceeded", "observedGeneration": 3,
             "message": "Helm rollback to previous release apps/podinfo.v13 with chart podinfo@6.0.3 succeeded",
             "lastTransitionTime": "2026-11-30T23:40:44Z"},
        ],
        "failures": 2,
        "upgradeFailures": 2,
        "lastAttemptedReleaseAction": "upgrade",
        "history": [{"chartVersion": "6.0.3", "status": "deployed"}],
    },
}  # fmt: skip


def test_a_values_error_is_the_error_shown_not_the_last_upgrade_failure() -> None:
    """Before, the verdict said `UpgradeFailed: Helm upgrade failed … simulated failure` (the Released condition of
    an earlier attempt) for a release whose current error is the values error, with the wrong hint."""
    result = verdict(parse_flux_object(VALUES_ERROR_AFTER_A_FAILED_UPGRADE))
    assert (result.phase, result.reason) == (Phase.FAILED, "ValuesError")
    assert result.message.startswith("could not resolve ConfigMap chart values reference 'apps/values'")


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_the_simulated_controllers_report_a_malformed_object_once_not_at_every_pass(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulated API server does no schema validation (a real one refuses `path: 12`), so its controllers meet
    such objects. Before, `fluxmon sim` and `fluxmon demo` printed a traceback for each at every pass: hundreds a
    minute, burying everything else on the terminal."""
    caplog.set_level(logging.ERROR, logger="fluxmon")
    kustomizations = fleet.cluster.admin.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    weird = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "weird", "namespace": "flux-system"},
        "spec": {"interval": "1m", "path": 12, "sourceRef": "flux-system"},
    }
    fleet.cluster.admin.create(kustomizations, "flux-system", weird)

    def reports() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "Kustomization/flux-system/weird" in r.getMessage()]

    deadline = time.monotonic() + 30
    while not reports() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline, not standing in for one
    fleet.controllers.stop()
    assert len(reports()) == 1
    kustomize = next(c for c in fleet.controllers._controllers if isinstance(c, KustomizeController))
    for _ in range(3):
        kustomize.reconcile_all()
    assert len(reports()) == 1, [r.getMessage() for r in reports()]


SECRET = "s3cr3tTOKEN"


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_a_controller_message_with_credentials_is_redacted_everywhere(fleet: Fleet, tmp_path: Path) -> None:
    """source-controller's message names the URL it failed to clone (`unable to clone '<url>': …`), credentials
    and all when `spec.url` holds them. Before, only the tray's notification redacted them: `wait`, `watch`,
    `--json`, the details window, and the history and active files on disk showed the token."""
    url = f"http://fluxbot:{SECRET}@127.0.0.1:9/fleet.git"
    sources = fleet.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
    fleet.cluster.admin.patch(sources, "flux-system", "flux-system", {"spec": {"url": url}})
    fleet.watcher.wait_for(
        lambda objs: SECRET in json.dumps(objs["GitRepository/flux-system"]["status"]), what="the clone failure"
    )
    spec = SessionSpec(
        id="pushed",
        remote_url="http://127.0.0.1:9/fleet.git",
        branch="main",
        commit=fleet.commit_and_push(SCALE_WEB, "scale web"),
        repo=str(fleet.work),
        reconcile=True,
        timeout_seconds=60,
    )
    state = tmp_path / "state"
    engine = Engine(kubeconfig=str(fleet.cluster.kubeconfig), state_dir=state)
    pushes: list[PushSnapshot] = []
    engine.subscribe(pushes.append)
    engine.start()
    try:
        engine.add(spec)
        final = engine.wait_final(spec.id, timeout=60)
    finally:
        engine.stop()
    assert final is not None
    assert final.state is SessionState.FAILED, final
    assert "unable to clone 'http://***@127.0.0.1:9/fleet.git'" in final.message
    assert final.message.count("unable to clone") == 1, "the simulator said it twice"
    for push in pushes:
        assert SECRET not in json.dumps(push_record(push)), push
        assert SECRET not in tree(push.first, verbosity="verbose", colour=False)
    for path in state.rglob("*"):
        assert not path.is_file() or SECRET not in path.read_text(encoding="utf-8"), path


def terminal_screen(output: str) -> list[str]:
    """The rows a terminal shows after `output`, for text that never wraps and only moves up (`ESC[nF`) and
    clears to the end of the screen (`ESC[J`), as `watch` does."""
    screen: list[str] = []
    row = 0
    for part in re.split(r"(\x1b\[\d+F|\x1b\[J)", output):
        if match := re.fullmatch(r"\x1b\[(\d+)F", part):
            row = max(row - int(match[1]), 0)
        elif part == "\x1b[J":
            del screen[row:]
        elif part:
            lines = part.split("\n")
            screen[row:row] = lines[:-1]
            row += len(lines) - 1
            assert not lines[-1], f"watch ends every write with a newline: {part!r}"
    return screen


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_watch_keeps_a_warning_on_screen_above_the_tree_it_redraws(fleet: Fleet) -> None:
    """A malformed object is reported once, on stderr, which shares the terminal with the tree. Before, the next
    redraw moved up over as many rows as the tree had taken, so it erased the warning and left the old tree's first
    row behind: the one report of the bad object was never seen."""
    fleet.controllers.stop()
    fleet.commit_and_push(SCALE_WEB, "scale web")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    args = [
        sys.executable, "-m", "fluxmon", "watch", "--repo", str(fleet.work), "--kubeconfig",
        str(fleet.cluster.kubeconfig), "--timeout", "30s", "--reconcile",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, stdout=follower, stderr=follower, env={**fleet.env, "NO_COLOR": "1", "COLUMNS": ""}
    )
    os.close(follower)
    chunks: list[bytes] = []
    drawn = threading.Event()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:  # EIO: the other end was closed
                if exc.errno != errno.EIO:
                    raise
                return
            if not chunk:
                return
            chunks.append(chunk)
            if b"pending" in b"".join(chunks):
                drawn.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert drawn.wait(30), b"".join(chunks)
        sources = fleet.cluster.admin.resource("source.toolkit.fluxcd.io/v1", "GitRepository")
        oops = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "oops", "namespace": "flux-system"},
            "spec": {"interval": "1m", "url": "http://[oops/x.git", "ref": {"branch": "main"}},
        }
        fleet.cluster.admin.create(sources, "flux-system", oops)
        fleet.controllers.start()
        assert process.wait(60) == 0
    finally:
        process.kill()
        reader.join(10)
        os.close(leader)
    screen = terminal_screen(b"".join(chunks).decode("utf-8").replace("\r\n", "\n"))
    warning = "GitRepository/flux-system/oops is malformed, read as empty where it is: spec.url: not a URL"
    assert warning in screen[0], screen
    assert screen[1].startswith(fleet.git("rev-parse", "--short=7", "HEAD")), screen
    assert sum("fleet.git main · " in line for line in screen) == 1, screen
    assert "fleet.git main · succeeded · " in screen[2], screen


def test_kinds_with_the_same_trouble_are_one_note() -> None:
    """`wait` on a closed port printed the same sentence five times, once per kind, before its one-line error."""
    message = "cannot reach the API server of context 'x' at http://127.0.0.1:9: [Errno 111] Connection refused"
    states = {
        kind: KindState(kind=kind, status=KindStatus.UNREACHABLE, message=message)
        for kind in ("GitRepository", "OCIRepository", "Kustomization", "HelmRelease")
    }
    spec = SessionSpec(id="s", remote_url="ssh://git@github.com/acme/fleet", branch="main", commit="a" * 40)
    snapshot = evaluate(spec, {}, states, now=spec.created_at + 1)
    assert snapshot.notes == (f"GitRepository, HelmRelease, Kustomization, OCIRepository: {message}",)


@pytest.mark.parametrize(("timeout", "said"), [(8, "8s"), (90, "90s"), (300, "5m"), (5400, "90m")])
def test_a_timeout_is_said_in_the_unit_it_was_given_in(timeout: int, said: str) -> None:
    """`wait --timeout 8s` ended with "timed out after 0.133333m"."""
    spec = SessionSpec(
        id="s", remote_url="ssh://git@github.com/acme/fleet", branch="main", commit="a" * 40, timeout_seconds=timeout
    )
    states = {kind: KindState(kind=kind, status=KindStatus.SYNCED) for kind in ("GitRepository", "Kustomization")}
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": "flux-system", "generation": 1},
        "spec": {"url": "ssh://git@github.com/acme/fleet", "ref": {"branch": "main"}},
    }
    snapshot = evaluate(spec, {parse_flux_object(source).ref: parse_flux_object(source)}, states, now=1e10)
    assert snapshot.state is SessionState.TIMED_OUT, snapshot
    assert snapshot.message.startswith(f"timed out after {said}: "), snapshot.message


def test_assess_redacts_credentials_in_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubectl get gitrepositories -o yaml | fluxmon assess` in a CI job printed the token into the job's log."""
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": "flux-system", "generation": 1},
        "spec": {"url": f"https://fluxbot:{SECRET}@git.example.com/fleet.git", "ref": {"branch": "main"}},
        "status": {
            "observedGeneration": -1,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "GitOperationFailed", "observedGeneration": 1,
                 "message": f"failed to checkout and determine revision: unable to clone "
                 f"'https://fluxbot:{SECRET}@git.example.com/fleet.git': authentication required"},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(source))
    for output in ("json", "table"):
        assert main(["assess", "--output", output, str(path)]) == 1
        shown = capsys.readouterr().out
        assert SECRET not in shown
        assert "unable to clone 'https://***@git.example.com/fleet.git'" in shown


HEALTHY_WEB_AGAIN = edit("apps/web.yaml", "  annotations:\n    sim.fluxmon.dev/simulate: unhealthy\n", "")


def test_reverting_a_change_in_git_removes_it_from_the_cluster(fleet: Fleet) -> None:
    """kustomize-controller applies server-side as its own field manager, so a field it applied and no longer
    applies is removed. The sample fleet's README says "Revert the change and push again to see the fix deployed";
    before, the simulated controller merged each manifest into the object, the annotation stayed, and the revert
    failed like the break itself."""
    unhealthy = fleet.push(UNHEALTHY_WEB, "An unhealthy web")
    fleet.wait_phases(unhealthy, {"Kustomization/apps": Phase.FAILED})
    fleet.commit_and_push(HEALTHY_WEB_AGAIN, "Revert: an unhealthy web")
    result = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "60s", "--reconcile",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployments = fleet.cluster.admin.resource("apps/v1", "Deployment")
    web = fleet.cluster.admin.get(deployments, "apps", "web")
    assert "sim.fluxmon.dev/simulate" not in (web["metadata"].get("annotations") or {})
