"""Optional parts of the install: what a renter or provider does not need.

``pip install dgpu`` is a node; ``dgpu[build]`` adds the zig toolchain and pyelftools that
only rebuild the escrow ``.so`` (the built one ships with the package), ``dgpu[sim]`` adds
matplotlib for simulation charts, ``dgpu[amd]`` AMD's ``amdsmi`` binding for providers with
AMD GPUs, and ``dgpu[dev]`` has all three. A command that needs a
missing extra stops with :class:`MissingExtra`, which says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dgpu.protocol.errors import DgpuError


class MissingExtra(DgpuError):
    """A module of an optional extra is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {module!r}, which is not installed: pip install 'dgpu[{extra}]'"
        )
        self.module = module
        self.extra = extra


def import_extra(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` of the ``extra``; :class:`MissingExtra` in words when it is absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module, extra, purpose) from None
