"""Typed errors of the coordinator.

Every HTTP rejection is an :class:`ApiError` carrying its status, a stable machine code and
a message in words; the app renders it as ``{"error": {"code": ..., "message": ...}}``::

    DgpuError
    └── CoordinatorError
        ├── ApiError              a request refused with an HTTP status (4xx/5xx)
        ├── StoreError            the database is unusable (bad schema version, ...)
        │   └── StoreUnavailable  the database cannot be reached now (503, retried)
        ├── SettlementError       a settlement round could not run (no chain, ...)
        └── ChannelConflict       a receipt for a channel stored for another party (409)

(The client's error, ``CoordinatorClientError``, lives with the client in
:mod:`dgpu.node.coordinator_client`.)
"""

from __future__ import annotations

from collections.abc import Mapping

from dgpu.protocol.errors import DgpuError


class CoordinatorError(DgpuError):
    """Root of the errors of :mod:`dgpu.coordinator`."""


class ApiError(CoordinatorError):
    """A request refused with ``status``; ``code`` is stable and machine-readable."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str, code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message)


def forbidden(message: str, code: str = "forbidden") -> ApiError:
    return ApiError(403, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def unprocessable(message: str, code: str) -> ApiError:
    return ApiError(422, code, message)


class StoreError(CoordinatorError):
    """The database cannot be used (unknown schema version, failed migration)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, restarting, connection lost): the API
    answers 503 in words and the next request tries again."""


class SettlementError(CoordinatorError):
    """A settlement round cannot run or a batch failed on chain."""


class ChannelConflict(CoordinatorError):
    """A receipt for a channel opening the store holds for another provider, renter,
    program or job (the API answers 409 ``channel_conflict``)."""

    code = "channel_conflict"
