"""Errors of the renter role.

::

    DgpuError
    └── RenterError                root of dgpu.node.renter
        ├── NoMatchingOffer        no offer passes the filters (says which filter bit)
        ├── JobRefused             every provider tried said no (code and message of the last)
        ├── FundingFailed          the escrow channel could not be opened
        ├── ProviderMisbehaved     a report the renter will not pay, or a broken promise
        ├── JobAborted             the job ended without a final status (provider gone)
        ├── OutputMismatch         an output file whose bytes are not the announced ones
        ├── InputError             an input that cannot be sent (names the path)
        ├── TunnelError            a port that cannot be forwarded
        └── Outraced               (internal) another concurrent attempt agreed first
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class RenterError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.renter`."""


class NoMatchingOffer(RenterError):
    """No offer matches; ``reasons`` counts the offers each filter excluded."""

    def __init__(self, message: str, reasons: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or {}


class JobRefused(RenterError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"provider refused the job ({code}): {message}")
        self.code = code
        self.reason = message


class FundingFailed(RenterError):
    """The escrow channel could not be opened or was not accepted."""


class ProviderMisbehaved(RenterError):
    """The provider claimed more than the agreement allows, or broke the protocol."""


class JobAborted(RenterError):
    """The job ended without its final status (the provider vanished or stopped talking)."""


class OutputMismatch(RenterError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"output {path}: {reason}")
        self.path = path


class InputError(RenterError):
    """An input that cannot be sent: unreadable, a symlink out of its tree, over the limit,
    or refused by the provider's bulk server (the message names the path)."""


class TunnelError(RenterError):
    """A ``--port`` forward that cannot be set up (bad form, local port taken)."""


class Outraced(RenterError):
    """Another attempt won the race to an agreement first: this one stops before signing
    (its provider only sees the stream close, which releases its short quote hold). Never
    leaves :func:`~dgpu.node.renter.attempts.negotiate_first`."""

    def __init__(self, provider: bytes) -> None:
        super().__init__(f"another provider agreed before {provider.hex()[:16]}")
        self.provider = provider
