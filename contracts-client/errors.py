"""Errors of the escrow client (:mod:`dgpu.contracts_client`, outside the chain layer)::

    DgpuError
    ├── EscrowClientError            root of the escrow client
    │   ├── AccountDecodeError       account data that is not the expected escrow account
    │   ├── ChannelNotFound          no open channel at an address
    │   ├── ConfigNotFound           the program's config was never initialized
    │   ├── ProgramNotDeployed       no executable program at the configured program id
    │   └── BatchTooLarge            more receipts than fit one transaction
    └── ChainError (dgpu.contracts_client.chain)
        └── TransactionFailed
            └── EscrowProgramError   the escrow program refused: code, IDL name and message

``EscrowProgramError`` is both an :class:`EscrowClientError` and a chain
:class:`~dgpu.contracts_client.chain.TransactionFailed`, so callers may catch either.
"""

from __future__ import annotations

from dgpu.contracts_client.chain import TransactionFailed
from dgpu.protocol.errors import DgpuError
from solders.pubkey import Pubkey


class EscrowClientError(DgpuError):
    """Root of the errors of the escrow client."""


class AccountDecodeError(EscrowClientError):
    """Account data that does not decode as the expected escrow account."""

    def __init__(self, address: Pubkey, what: str, reason: str) -> None:
        super().__init__(f"{address} is not an escrow {what}: {reason}")
        self.address = address
        self.what = what


class IdlConversionError(EscrowClientError):
    """A legacy IDL that has no Anchor 0.30+ form (see :mod:`dgpu.contracts_client.anchor_spec`)."""


class ChannelNotFound(EscrowClientError):
    def __init__(self, channel: Pubkey) -> None:
        super().__init__(f"no open escrow channel at {channel}")
        self.channel = channel


class ConfigNotFound(EscrowClientError):
    def __init__(self, config: Pubkey) -> None:
        super().__init__(f"the escrow config {config} is not initialized")
        self.config = config


class ProgramNotDeployed(EscrowClientError):
    """No executable program at the program id the client was configured with: the escrow
    was deployed under another key, or not at all, on this chain."""

    def __init__(self, program_id: Pubkey, reason: str) -> None:
        super().__init__(
            f"no escrow program at {program_id} on this chain ({reason}): deploy it with"
            " `dgpu chain deploy`, or give the program id it was deployed under"
            " (--program-id, $DGPU_PROGRAM_ID or `dgpu config set program_id ...`)"
        )
        self.program_id = program_id
        self.reason = reason


class BatchTooLarge(EscrowClientError):
    def __init__(self, receipts: int, limit: int, tx_size: int) -> None:
        super().__init__(
            f"{receipts} receipts make a {tx_size}-byte transaction; at most {limit} fit"
        )
        self.receipts = receipts
        self.limit = limit
        self.tx_size = tx_size


class EscrowProgramError(EscrowClientError, TransactionFailed):
    """The escrow program returned one of its IDL errors."""

    def __init__(self, failure: TransactionFailed, code: int, name: str, text: str) -> None:
        TransactionFailed.__init__(
            self,
            failure.err,
            failure.logs,
            signature=failure.signature,
            landed=failure.landed,
        )
        self.args = (f"escrow program error {code} {name}: {text}",)
        self.code = code
        self.name = name
        self.text = text

    def __str__(self) -> str:
        return str(self.args[0])
