"""The layers are enforced, not only written down: a forbidden import in a copy of the tree fails `lint-imports`.

Each case copies the source tree (the packages and pyproject.toml), adds one import that breaks a contract, and
runs the real import-linter on the copy; the untouched copy must pass, so that a failure is the import's doing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREE = ("fluxmon", "core", "tray", "sim", "hooks", "assets", "bench", "harness", "tests")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_tree(destination: Path) -> Path:
    for name in TREE:
        shutil.copytree(
            ROOT / name, destination / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "fixtures")
        )
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so that the copy's packages are analysed, not the installed (editable) ones.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def add_import(path: Path, statement: str) -> None:
    text = path.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    path.write_text(text.replace(marker, f"{marker}\n{statement}  # noqa: F401\n", 1), encoding="utf-8")


def test_the_untouched_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("core/verdict.py", "import fluxmon.tray.menu", "layers"),
        ("core/verdict.py", "import fluxmon.core.engine", "layers"),
        ("core/objects.py", "import fluxmon.core.cluster", "layers"),
        ("core/verdict.py", "import fluxmon.sim.apiserver", "independent"),
        ("sim/reconciler.py", "import fluxmon.core.session", "independent"),
        ("bench/monitor.py", "import tests.flux_bodies", "do not import the tests"),
    ],
)
def test_a_forbidden_import_fails_the_check(tmp_path: Path, module: str, statement: str, contract: str) -> None:
    tree = copy_tree(tmp_path)
    add_import(tree / module, statement)
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout, result.stdout
    report = result.stdout.partition("Broken contracts")[2]
    assert contract in report.replace("\n", " "), result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    importer = importer if importer.startswith("bench.") else f"fluxmon.{importer}"
    assert f"{importer} -> {statement.removeprefix('import ')}" in report, result.stdout
