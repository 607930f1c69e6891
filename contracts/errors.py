"""Errors of :mod:`dgpu.contracts` (building the on-chain program)::

DgpuError
└── EscrowError
    ├── RelinkError      a BPF object that cannot become an SBPF v0 program
    │   └── LintError    an instruction SBPF v0 rejects or runs differently (names offset)
    └── BuildError       the compiler failed, or a rebuild differs from the committed .so
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class EscrowError(DgpuError):
    """Root of the errors of :mod:`dgpu.contracts`."""


class RelinkError(EscrowError):
    """An object file the relinker refuses; the message says what to change."""


class LintError(RelinkError):
    """Forbidden encodings in ``.text``; ``problems`` lists each as ``.text+0x..: why``."""

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"SBPF v0 lint failed: {shown}{more}")
        self.problems = problems


class BuildError(EscrowError):
    """The C compiler failed or the rebuilt program differs from the committed one."""
