"""One error tree: every exception class dgpu defines derives from DgpuError, so the CLI
can print any of them in words and callers can catch dgpu's own refusals in one place."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from pathlib import Path

from dgpu.protocol.errors import DgpuError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dgpu"]["packages"]


def every_module() -> list[str]:
    names = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        names.append(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            spec = info.module_finder.find_spec(info.name, None)
            # only Python modules: contracts/escrow.so is the SBPF program, not an extension
            if spec is not None and str(spec.origin).endswith(".py"):
                names.append(info.name)
    return names


def test_every_exception_dgpu_defines_is_a_dgpu_error() -> None:
    defined = []
    for name in every_module():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and issubclass(obj, BaseException):
                defined.append(obj)
    assert len(defined) > 40, "the scan should see the error modules of every package"
    strays = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in defined if not issubclass(c, DgpuError)
    )
    assert strays == []
