"""`fluxmon demo` as a newcomer runs it on a machine with no display: it says why there is no tray, then runs the
whole pipeline in the terminal view, three real pushes, and leaves nothing behind. (With a display: test_tray.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.gitrepos import isolated_env


def test_the_demo_deploys_fails_and_deploys_the_fix(tmp_path: Path) -> None:
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
    assert "► no tray here (no display (DISPLAY is not set)" in out
    assert out.count("► the hooks recorded the push of") == 3  # hooks -> spool -> reader, for real
    finals = [line for line in out.splitlines() if line.startswith(("✔ ", "✗ ")) and "demo finished" not in line]
    assert (
        [line.split(":")[0] for line in finals]
        == [  # the final line under each push's tree
            f"✔ {finals[0][2:9]} deployed",
            "✗ Kustomization flux-system/apps failed",
            f"✔ {finals[2][2:9]} deployed",
        ]
    )
    assert "BuildFailed" in finals[1]  # the error itself is in the failed row above it: printed once
    assert "✗ Kustomization/apps" in out
    assert "BuildFailed: kustomize build failed" in out
    assert out.rstrip().endswith("✔ demo finished: 3 of 3 pushes ended as expected")
    assert not list(tmp_path.glob("fluxmon-demo-*")), "the demo left its temporary folder behind"
    assert "Traceback" not in result.stderr
