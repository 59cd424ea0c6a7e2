"""`fluxmon demo` as a newcomer runs it on a machine with no display: it says why there is no tray, then runs the
whole pipeline in the terminal view on two simulated clusters, staging and production: three real pushes, the
broken one breaking production alone, and it leaves nothing behind. (With a display: test_tray.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fluxmon.core.push import combine
from fluxmon.core.session import SessionSnapshot, SessionState
from fluxmon.demo import SCRIPT, ended_as_expected
from harness.gitrepos import isolated_env
from harness.snapshots import snapshot


def test_the_demo_deploys_to_both_clusters_fails_on_production_alone_and_deploys_the_fix(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path), "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "demo", "--fast"],  # isolated_env has no DISPLAY
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert "► no tray here (no display (DISPLAY is not set)" in out
    assert [line.split(" at http")[0] for line in lines if line.startswith("► simulated cluster")] == [
        "► simulated cluster staging",
        "► simulated cluster production",
    ]
    assert out.count("► the hooks recorded the push of") == 3  # hooks -> spool -> reader, for real; once per push
    assert "► the initial fleet: deployed to staging, production" in lines
    # The last line under each push's report: the push's outcome across both clusters, its error said above it once.
    finals = [line.split(" (")[0] for line in lines if line.startswith(("✔ main@", "✗ main@", "◎ main@"))]
    assert [final.split(" ", 2)[2] for final in finals] == [
        "deployed to staging, production",
        "deployed to staging · failed on production",
        "deployed to staging, production",
    ]
    assert "  ✗ production: Kustomization flux-system/apps failed: BuildFailed" in out  # as soon as it failed
    assert "apps/production/web-settings.yaml" in out
    assert out.rstrip().endswith("✔ demo finished: 3 of 3 pushes ended as expected")
    assert not list(tmp_path.glob("fluxmon-demo-*")), "the demo left its temporary folder behind"
    assert "Traceback" not in result.stderr


def on(context: str, state: SessionState) -> SessionSnapshot:
    return snapshot(state, context=context)


def test_a_step_ends_as_expected_only_when_every_cluster_did_what_the_step_says() -> None:
    good, broken, _ = SCRIPT
    deployed = combine([on("staging", SessionState.SUCCEEDED), on("production", SessionState.SUCCEEDED)])
    production_failed = combine([on("staging", SessionState.SUCCEEDED), on("production", SessionState.FAILED)])
    both_failed = combine([on("staging", SessionState.FAILED), on("production", SessionState.FAILED)])
    staging_failed = combine([on("staging", SessionState.FAILED), on("production", SessionState.SUCCEEDED)])
    assert ended_as_expected(deployed, good)
    assert not ended_as_expected(production_failed, good)
    assert ended_as_expected(production_failed, broken)
    # Failed, as the step expects, but not where: the demo would be showing something else than it says.
    assert not ended_as_expected(both_failed, broken)
    assert not ended_as_expected(staging_failed, broken)
