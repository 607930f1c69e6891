"""The layer rules of ARCHITECTURE.md, enforced: import-linter's contracts (pyproject.toml)
hold for the tree, a forbidden import breaks them, and only contracts_client imports
LiteSVM (a rule import-linter cannot state for a submodule of an outside package)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dgpu"][
    "packages"
]
LINT = Path(sys.executable).with_name("lint-imports")


def lint_imports(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


def mirror(tmp_path: Path, copied: str) -> Path:
    """A ``dgpu`` tree of symlinks to the real folders, with ``copied`` a real copy."""
    tree = tmp_path / "tree"
    (tree / "dgpu").mkdir(parents=True)
    for name, folder in PACKAGES.items():
        target = tree / "dgpu" / name.split(".", 1)[1]
        if name == copied:
            shutil.copytree(ROOT / folder, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.symlink_to(ROOT / folder)
    return tree


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("dgpu.protocol", "dgpu.pricing"),
        ("dgpu.node", "dgpu.coordinator"),
        ("dgpu.bootstrap", "dgpu.coordinator"),
        ("dgpu.simulations", "dgpu.coordinator"),
        ("dgpu.coordinator", "dgpu.node"),
        ("dgpu.contracts_client", "dgpu.node"),
        ("dgpu.node", "dgpu.cli"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, package: str, forbidden: str) -> None:
    tree = mirror(tmp_path, package)
    folder = tree / "dgpu" / package.split(".", 1)[1]
    (folder / "_forbidden.py").write_text(f"import {forbidden}\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert f"{package}._forbidden -> {forbidden}" in result.stdout


def litesvm_importers() -> list[str]:
    found = []
    for name, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    modules = [node.module or ""]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                if any(m == "solders.litesvm" or m.startswith("solders.litesvm.") for m in modules):
                    found.append(f"{name}:{path.relative_to(ROOT)}")
    return found


def test_only_contracts_client_imports_litesvm() -> None:
    importers = litesvm_importers()
    assert importers, "LiteSVM is used by contracts_client; the scan found no import at all"
    assert all(i.startswith("dgpu.contracts_client:") for i in importers), importers
