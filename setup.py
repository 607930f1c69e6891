"""Maps the top-level folders onto the ``dgpu.*`` import namespace.

The folder -> package table lives in ``pyproject.toml`` under ``[tool.dgpu.packages]``
(one place; ``scripts/typecheck`` reads it too). Folder = import name, with a hyphen
becoming an underscore (``contracts-client/`` -> ``dgpu.contracts_client``). setuptools'
declarative configuration cannot map several folders onto one namespace, hence this file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def _packages() -> tuple[list[str], dict[str, str]]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dgpu"]["packages"]
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in table.items():
        if name != "dgpu." + folder.replace("-", "_"):
            raise SystemExit(
                f"pyproject.toml [tool.dgpu.packages]: {name} must be the folder {folder}"
            )
        packages.append(name)
        package_dir[name] = folder
        for sub in find_packages(str(ROOT / folder)):
            packages.append(f"{name}.{sub}")
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
