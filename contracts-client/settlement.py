"""Settlement transactions: many receipts, one Ed25519 precompile, one ``settle``.

A batch is two instructions: the Ed25519 precompile verifying every renter signature
(key and 64-byte receipt inside its own data), then ``settle`` with a
(channel, vault, provider token) triple per receipt in the same order. Transaction size,
not compute, bounds a batch: each receipt costs 206 bytes in the precompile (offsets,
key, signature, receipt) plus its three accounts, 32 bytes each in a legacy transaction
or one byte each through an address lookup table (v0 message).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client.ed25519 import SignedMessage, ed25519_instruction
from dgpu.contracts_client.errors import BatchTooLarge
from dgpu.contracts_client.idl import ChannelAccount, EscrowIdl, default_idl
from dgpu.contracts_client.pda import associated_token_address
from dgpu.protocol.identity import SIGNATURE_LEN
from dgpu.protocol.receipt import ReceiptBody
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.sysvar import INSTRUCTIONS
from solders.transaction import VersionedTransaction
from spl.token.constants import TOKEN_PROGRAM_ID

PACKET_DATA_SIZE: Final = 1232  # the largest transaction a cluster accepts, in bytes


@dataclass(frozen=True)
class Settlement:
    """One signed receipt and the accounts its payment moves between."""

    channel: Pubkey
    vault: Pubkey
    provider_token: Pubkey
    renter: Pubkey
    body: ReceiptBody
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != SIGNATURE_LEN:
            raise ValueError(f"receipt signature must be {SIGNATURE_LEN} bytes")
        if self.body.channel != bytes(self.channel):
            raise ValueError("receipt is for another channel than the one it settles")

    @classmethod
    def for_channel(
        cls,
        channel: ChannelAccount,
        cumulative: int,
        signature: bytes,
        *,
        provider_token: Pubkey | None = None,
        program_id: Pubkey = PROGRAM_ID,
    ) -> Settlement:
        """Settle ``cumulative`` on ``channel``, paying the provider's associated token
        account unless ``provider_token`` names another one it owns."""
        return cls(
            channel=channel.address,
            vault=channel.vault,
            provider_token=provider_token
            or associated_token_address(channel.provider, channel.mint),
            renter=channel.renter,
            body=channel.receipt(cumulative, program_id),
            signature=signature,
        )

    @property
    def accounts(self) -> tuple[Pubkey, Pubkey, Pubkey]:
        return self.channel, self.vault, self.provider_token


def settle_instructions(
    items: Sequence[Settlement], idl: EscrowIdl | None = None
) -> list[Instruction]:
    """``[ed25519 precompile, settle]`` for a batch of receipts (in this order)."""
    if not items:
        raise ValueError("a settlement batch needs at least one receipt")
    idl = idl or default_idl()
    signed = [SignedMessage.receipt(i.body, i.signature, i.renter) for i in items]
    remaining = [
        AccountMeta(key, is_signer=False, is_writable=True)
        for item in items
        for key in item.accounts
    ]
    settle = idl.instruction(
        "settle", {}, {"instructions": INSTRUCTIONS, "token_program": TOKEN_PROGRAM_ID}, remaining
    )
    return [ed25519_instruction(signed), settle]


def lookup_table_entries(items: Sequence[Settlement]) -> list[Pubkey]:
    """What a lookup table must hold for ``items`` to be looked up: the fixed accounts,
    then every triple (duplicates removed, order kept)."""
    entries = [INSTRUCTIONS, TOKEN_PROGRAM_ID]
    for item in items:
        entries.extend(item.accounts)
    return list(dict.fromkeys(entries))


def settle_message(
    payer: Pubkey,
    items: Sequence[Settlement],
    blockhash: Hash,
    lookup_table: AddressLookupTableAccount | None = None,
    idl: EscrowIdl | None = None,
) -> MessageV0:
    """The v0 message of a batch; with ``lookup_table``, accounts it holds are indexed."""
    tables = [lookup_table] if lookup_table is not None else []
    return MessageV0.try_compile(payer, settle_instructions(items, idl), tables, blockhash)


def settle_transaction(
    payer: Keypair,
    items: Sequence[Settlement],
    blockhash: Hash,
    lookup_table: AddressLookupTableAccount | None = None,
    idl: EscrowIdl | None = None,
) -> VersionedTransaction:
    """A signed batch transaction; :class:`BatchTooLarge` if it exceeds the packet size."""
    message = settle_message(payer.pubkey(), items, blockhash, lookup_table, idl)
    tx = VersionedTransaction(message, [payer])
    size = len(bytes(tx))
    if size > PACKET_DATA_SIZE:
        limit = receipts_per_transaction(with_lookup_table=lookup_table is not None)
        raise BatchTooLarge(len(items), limit, size)
    return tx


def legacy_settle_transaction(
    payer: Keypair, items: Sequence[Settlement], blockhash: Hash, idl: EscrowIdl | None = None
) -> VersionedTransaction:
    """The same batch as a legacy (pre-v0) transaction, for clusters without v0 support."""
    message = Message.new_with_blockhash(settle_instructions(items, idl), payer.pubkey(), blockhash)
    tx = VersionedTransaction(message, [payer])
    size = len(bytes(tx))
    if size > PACKET_DATA_SIZE:
        raise BatchTooLarge(len(items), receipts_per_transaction(with_lookup_table=False), size)
    return tx


def batch_size(count: int, *, with_lookup_table: bool) -> int:
    """Bytes of a ``count``-receipt batch transaction (fresh keys for every account)."""
    payer = Pubkey.new_unique()
    items = [_placeholder(i) for i in range(count)]
    table = None
    if with_lookup_table:
        table = AddressLookupTableAccount(Pubkey.new_unique(), lookup_table_entries(items))
    message = settle_message(payer, items, Hash.default(), table)
    return len(bytes(VersionedTransaction.populate(message, [Signature.default()])))


@cache
def receipts_per_transaction(*, with_lookup_table: bool) -> int:
    """How many receipts one settlement transaction carries at most."""
    count = 0
    while batch_size(count + 1, with_lookup_table=with_lookup_table) <= PACKET_DATA_SIZE:
        count += 1
    return count


def _placeholder(index: int) -> Settlement:
    channel = Pubkey.new_unique()
    body = ReceiptBody(bytes(PROGRAM_ID), bytes(channel), index + 1, 10**9 * (index + 1))
    return Settlement(
        channel,
        Pubkey.new_unique(),
        Pubkey.new_unique(),
        Pubkey.new_unique(),
        body,
        bytes(SIGNATURE_LEN),
    )


__all__ = [
    "PACKET_DATA_SIZE",
    "Settlement",
    "batch_size",
    "legacy_settle_transaction",
    "lookup_table_entries",
    "receipts_per_transaction",
    "settle_instructions",
    "settle_message",
    "settle_transaction",
]
