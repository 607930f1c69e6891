"""Maps the top-level folders onto the ``dgpu.*`` import namespace.

The folder -> package table is the single source of truth for the layout
(see ARCHITECTURE.md); ``scripts/typecheck`` reads it too.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = {
    "dgpu.protocol": "protocol",
    "dgpu.pricing": "pricing",
    "dgpu.node": "node",
    "dgpu.bootstrap": "bootstrap",
    "dgpu.coordinator": "coordinator",
    "dgpu.escrow": "contracts",
    "dgpu.contracts": "contracts-client",
    "dgpu.simulations": "simulations",
    "dgpu.cli": "cli",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    root = Path(__file__).parent
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in FOLDERS.items():
        packages.append(name)
        package_dir[name] = folder
        for sub in find_packages(str(root / folder)):
            packages.append(f"{name}.{sub}")
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
