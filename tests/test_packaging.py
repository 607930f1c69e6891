"""`pip install .` carries everything: every dgpu.* package, typing markers, the escrow
program and its IDL, the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("dgpu-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.parametrize(
    "package",
    [
        "protocol",
        "pricing",
        "node",
        "bootstrap",
        "coordinator",
        "contracts",
        "contracts_client",
        "simulations",
        "cli",
    ],
)
def test_every_package_is_in_the_wheel(wheel: zipfile.ZipFile, package: str) -> None:
    names = set(wheel.namelist())
    assert f"dgpu/{package}/__init__.py" in names
    assert f"dgpu/{package}/py.typed" in names


def test_escrow_program_ships(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for artefact in (
        "dgpu/contracts/escrow.so",
        "dgpu/contracts/escrow.so.sha256",
        "dgpu/contracts/idl.json",
    ):
        assert artefact in names


def test_console_script(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "dgpu = dgpu.cli.main:main" in wheel.read(entry_points).decode()


def test_the_package_table_is_folder_equals_import() -> None:
    import tomllib

    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dgpu"]["packages"]
    for name, folder in table.items():
        assert name == "dgpu." + folder.replace("-", "_")
        assert (ROOT / folder / "__init__.py").is_file()
