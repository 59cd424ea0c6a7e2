"""The layers are enforced, not only written down: a forbidden import in a copy of the tree fails `lint-imports`.

Each case copies the source tree (the packages and pyproject.toml), adds one import that breaks a contract, and
runs the real import-linter on the copy; the untouched copy must pass, so that a failure is the import's doing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
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


def layered_modules() -> set[str]:
    """Every module or package named in the layers contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_module_of_the_monitor_has_its_layer() -> None:
    # A module left out of the layers is bound by nothing: a lower layer may import it, and it may import anything
    # that its own importers may. core/push.py and fluxmon/exits.py were left out so, and nothing said so.
    modules = {f"fluxmon.{path.stem}" for path in (ROOT / "fluxmon").glob("*.py") if not path.is_symlink()}
    modules |= {f"fluxmon.core.{path.stem}" for path in (ROOT / "core").glob("*.py")}
    modules -= {"fluxmon.__init__", "fluxmon.core.__init__"}
    assert sorted(modules - layered_modules()) == []


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
        ("core/session.py", "import fluxmon.core.push", "layers"),
        ("core/engine.py", "import fluxmon.exits", "layers"),
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
