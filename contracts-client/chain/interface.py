"""The ``Chain`` interface: what dgpu needs from a Solana cluster, as async methods.

Every method works from trio code (the node) and asyncio code (the coordinator): the
implementations use anyio primitives only. ``send_transaction`` returns once the
transaction is confirmed and raises :class:`TransactionFailed` (with the program logs)
when it was refused or failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from solders.account import Account
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import TransactionErrorType, TransactionStatus

AnyTransaction = Transaction | VersionedTransaction


@dataclass(frozen=True)
class Simulation:
    """The outcome of a simulated transaction; nothing was written to the chain."""

    err: TransactionErrorType | None
    logs: tuple[str, ...]
    units_consumed: int
    accounts: tuple[Account | None, ...] = ()

    @property
    def ok(self) -> bool:
        return self.err is None


@runtime_checkable
class Chain(Protocol):
    """A Solana cluster as seen by dgpu (in-process LiteSVM or JSON-RPC)."""

    async def latest_blockhash(self) -> Hash: ...

    async def get_slot(self) -> int:
        """The current slot (e.g. the ``recent_slot`` of a new address lookup table)."""
        ...

    async def send_transaction(self, tx: AnyTransaction) -> Signature:
        """Send, wait until confirmed, return the signature; raise TransactionFailed."""
        ...

    async def simulate_transaction(self, tx: AnyTransaction) -> Simulation: ...

    async def get_account(self, pubkey: Pubkey) -> Account | None: ...

    async def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[Account | None]: ...

    async def get_balance(self, pubkey: Pubkey) -> int:
        """Lamports held by ``pubkey`` (0 for an account that does not exist)."""
        ...

    async def get_token_balance(self, token_account: Pubkey) -> int:
        """Base units held by an SPL token account; AccountNotFound if there is none."""
        ...

    async def minimum_balance_for_rent_exemption(self, size: int) -> int: ...

    async def unix_time(self) -> int:
        """The chain's clock (the Clock sysvar's ``unix_timestamp``), in seconds."""
        ...

    async def signature_statuses(
        self, signatures: Sequence[Signature]
    ) -> list[TransactionStatus | None]: ...

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        """Airdrop lamports (local and test clusters only); returns once confirmed."""
        ...

    async def aclose(self) -> None:
        """Release what the chain owns (HTTP connections); idempotent."""
        ...


async def send_instructions(
    chain: Chain,
    instructions: Sequence[Instruction],
    payer: Keypair,
    signers: Sequence[Keypair] = (),
) -> Signature:
    """Build a transaction paid by ``payer`` with the latest blockhash, sign, send, confirm."""
    blockhash = await chain.latest_blockhash()
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    unique: dict[Pubkey, Keypair] = {payer.pubkey(): payer}
    for signer in signers:
        unique.setdefault(signer.pubkey(), signer)
    tx = Transaction(list(unique.values()), message, blockhash)
    return await chain.send_transaction(tx)
