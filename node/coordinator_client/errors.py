"""Errors of the coordinator's HTTP client::

DgpuError
└── CoordinatorClientError   a coordinator refused a request or did not answer
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class CoordinatorClientError(DgpuError):
    """A coordinator refused a request (``status``/``code`` set) or did not answer."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
