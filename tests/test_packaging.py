"""A wheel built from the repo installs into a fresh venv and runs; it claims only the `fluxmon` import name."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.flux_bodies import SHA_NEW

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "flux-examples.yaml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("flux_push_monitor-*.whl")
    return built


def test_wheel_nests_everything_under_one_import_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("flux_push_monitor-")}
    assert top_level == {"fluxmon"}
    assert "fluxmon/core/verdict.py" in names


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True, timeout=300
    )
    command = env_dir / "bin" / "fluxmon"
    help_run = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert help_run.returncode == 0
    assert "assess" in help_run.stdout
    assess = subprocess.run(
        [str(command), "assess", "--commit", SHA_NEW, "-o", "table", str(FIXTURES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # away from the repo, so nothing is imported from the source tree
        timeout=60,
    )
    assert assess.returncode == 1  # the examples hold failures
    assert "kustomization/apps" in assess.stdout
