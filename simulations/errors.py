"""Typed errors of :mod:`dgpu.simulations`.

::

    DgpuError
    └── SimulationError
        ├── ScenarioError           a scenario file or value that cannot be run;
        │                           ``key`` names the culprit (dotted TOML key)
        └── DeterminismUnavailable  the trio scheduler cannot be made deterministic
                                    (an incompatible trio), so byte-identical output
                                    cannot be promised
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class SimulationError(DgpuError):
    """Root of the errors of :mod:`dgpu.simulations`."""


class ScenarioError(SimulationError):
    """A scenario that cannot be run: ``key`` is the dotted TOML key at fault (or None when
    the whole file is), ``path`` the file if there is one."""

    def __init__(self, reason: str, *, key: str | None = None, path: str | None = None) -> None:
        where = " ".join(part for part in (path and f"{path}:", key and f"key {key!r}:") if part)
        super().__init__(f"{where} {reason}" if where else reason)
        self.reason = reason
        self.key = key
        self.path = path


class DeterminismUnavailable(SimulationError):
    """The installed trio does not expose the scheduler hooks determinism needs."""
