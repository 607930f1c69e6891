"""Typed errors of dgpu.

Every package has one root error, all of them deriving from :class:`DgpuError`, so the
CLI can print any of them in words. This module holds the root and the protocol tree::

    DgpuError
    └── ProtocolError
        ├── DecodeError            bytes that are not a valid message (names the field)
        │   └── MessageTooLarge    refused before decoding
        ├── SignatureError         a signature that does not verify (or of another kind)
        │   └── RequestAuthError   a signed HTTP request whose headers do not check (``code``)
        ├── OfferError
        │   ├── OfferExpired
        │   └── OfferNotYetValid
        ├── KeyFileError           a key file of the wrong format or permissions
        └── StateError             an event the state machine does not accept now
"""

from __future__ import annotations


class DgpuError(Exception):
    """Root of every error dgpu raises on purpose."""


class ProtocolError(DgpuError):
    """Root of the errors of :mod:`dgpu.protocol`."""


class DecodeError(ProtocolError):
    """Bytes that do not decode to a valid message; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{message} (field {field!r})")
        self.field = field


class MessageTooLarge(DecodeError):
    """A message longer than the cap, refused before any parsing."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class SignatureError(ProtocolError):
    """A signature that does not verify for the claimed signer and message kind."""


class RequestAuthError(SignatureError):
    """A signed HTTP request refused; ``code`` is stable and machine-readable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class OfferError(ProtocolError):
    """An offer that cannot be used now."""


class OfferExpired(OfferError):
    def __init__(self, expires_at: int, now: int) -> None:
        super().__init__(f"offer expired at {expires_at} (now {now})")
        self.expires_at = expires_at
        self.now = now


class OfferNotYetValid(OfferError):
    def __init__(self, created_at: int, now: int) -> None:
        super().__init__(f"offer is dated in the future: created {created_at}, now {now}")
        self.created_at = created_at
        self.now = now


class KeyFileError(ProtocolError):
    """A key file that is missing, malformed or readable by others."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StateError(ProtocolError):
    """An event a state machine does not accept in its current state."""
