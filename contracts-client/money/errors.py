"""Errors of the money seam (:mod:`dgpu.contracts_client.money`)::

    DgpuError
    └── PaymentError                 root of dgpu.contracts_client.money
        ├── ChannelNotFound          no channel account at that address
        ├── ChannelRefused           the escrow refused to open or refund a channel
        ├── SettlementFailed         a settle transaction did not land
        │   └── SettlementRefused    the chain refused the batch as it is
        │                            (``permanent``: the program refused a receipt in it)
        └── ChainUnavailable         the chain could not be read or did not confirm in
                                     time: a batch sent may or may not have landed

Every escrow implementation raises these, whatever its chain: the chain-backed one
converts the client's and the chain's errors at its boundary, so the settler decides on
causes (bisect a refusal, reconcile after an outage) and never on a transport.
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class PaymentError(DgpuError):
    """Root of the errors of :mod:`dgpu.contracts_client.money`."""


class ChannelNotFound(PaymentError):
    def __init__(self, channel: bytes) -> None:
        super().__init__(f"no escrow channel at {channel.hex()}")
        self.channel = channel


class ChannelRefused(PaymentError):
    """The escrow program (or its in-memory model) refused to open or refund a channel."""


class SettlementFailed(PaymentError):
    """A settlement could not be submitted or failed on chain."""


class SettlementRefused(SettlementFailed):
    """The chain refused a settle transaction as it is: sending it again changes nothing.

    ``permanent``: the escrow program itself refused one of its receipts (bad signature,
    another opening, above the deposit, a provider without a token account): that receipt
    never settles and is set aside once bisection has found it. Otherwise the refusal was
    not the receipts' own (too large, a fee payer short of SOL) and they are retried later.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChainUnavailable(PaymentError):
    """The chain could not be reached or did not confirm in time. A settle transaction
    sent may or may not have landed: only the channels' settled marks tell."""
