"""Errors of the bootstrap peer::

DgpuError
└── BootstrapError         the bootstrap peer cannot start or relay
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class BootstrapError(DgpuError):
    """Root of the errors of :mod:`dgpu.bootstrap`."""
