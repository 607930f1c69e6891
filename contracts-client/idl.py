"""The escrow's Anchor IDL driving instruction encoding and account decoding.

Instruction data and account layouts come from ``contracts/idl.json`` through anchorpy's
``Idl`` and ``Coder`` (8-byte discriminators, borsh); the account metas of each
instruction are laid out in the IDL's order with its writable and signer flags. Nothing
here packs bytes by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import construct
from anchorpy.coder.accounts import ACCOUNT_DISCRIMINATOR_SIZE
from anchorpy.coder.coder import Coder
from anchorpy.program.common import NamedInstruction
from anchorpy_core.idl import Idl
from dgpu.contracts import PROGRAM_ID, idl_path
from dgpu.contracts_client.errors import AccountDecodeError
from dgpu.protocol.receipt import ReceiptBody
from pyheck import snake
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey


@dataclass(frozen=True)
class ConfigState:
    """The decoded ``Config`` account."""

    address: Pubkey
    admin: Pubkey
    settler: Pubkey
    treasury: Pubkey
    mints: tuple[Pubkey, ...]
    channels_opened: int
    dispute_window: int
    fee_bps: int
    bump: int
    version: int = 1
    """Layout version (0: written before the field existed, same layout)."""


@dataclass(frozen=True)
class ChannelAccount:
    """The decoded ``Channel`` account (amounts in token base units, times in unix s)."""

    address: Pubkey
    renter: Pubkey
    provider: Pubkey
    mint: Pubkey
    vault: Pubkey
    channel_id: int
    open_nonce: int
    deposit: int
    settled: int
    paid: int
    fees: int
    expiry: int
    dispute_window: int
    fee_bps: int
    bump: int
    vault_bump: int
    version: int = 1
    """Layout version (0: written before the field existed, same layout)."""

    @property
    def refund_after(self) -> int:
        """Unix time from which the renter (or anyone) may refund the channel."""
        return self.expiry + self.dispute_window

    @property
    def remaining(self) -> int:
        """What receipts may still claim: the deposit minus the settled mark."""
        return self.deposit - self.settled

    def receipt(self, cumulative: int, program_id: Pubkey = PROGRAM_ID) -> ReceiptBody:
        """The receipt body the renter signs for ``cumulative`` on this opening."""
        return ReceiptBody(bytes(program_id), bytes(self.address), self.open_nonce, cumulative)


class EscrowIdl:
    """The escrow IDL bound to a program id: builds instructions, decodes accounts."""

    def __init__(self, idl: Idl, program_id: Pubkey = PROGRAM_ID) -> None:
        self.idl = idl
        self.program_id = program_id
        self.coder = Coder(idl)
        self._instructions = {snake(ix.name): ix for ix in idl.instructions}
        self._errors = {e.code: (e.name, e.msg or e.name) for e in idl.errors or ()}

    @classmethod
    def load(cls, path: Path | None = None, program_id: Pubkey = PROGRAM_ID) -> EscrowIdl:
        return cls(Idl.from_json((path or idl_path()).read_text()), program_id)

    @property
    def instruction_names(self) -> tuple[str, ...]:
        return tuple(self._instructions)

    def account_names(self, instruction: str) -> tuple[str, ...]:
        """The instruction's accounts (snake_case), in order."""
        return tuple(snake(a.name) for a in self._ix(instruction).accounts)

    def instruction(
        self,
        name: str,
        args: Mapping[str, Any],
        accounts: Mapping[str, Pubkey],
        remaining: Sequence[AccountMeta] = (),
    ) -> Instruction:
        """Encode instruction ``name`` (snake_case) with borsh ``args`` and named accounts."""
        ix = self._ix(name)
        expected = {snake(a.name) for a in ix.accounts}
        if missing := expected - accounts.keys():
            raise ValueError(f"{name}: missing accounts {sorted(missing)}")
        if extra := accounts.keys() - expected:
            raise ValueError(f"{name}: unknown accounts {sorted(extra)}")
        metas = [
            AccountMeta(accounts[snake(a.name)], is_signer=a.is_signer, is_writable=a.is_mut)
            for a in ix.accounts
        ]
        data = self.coder.instruction.encode(name, dict(args))
        return Instruction(self.program_id, data, [*metas, *remaining])

    def decode_instruction(self, data: bytes) -> tuple[str, Any]:
        """``(name, args)`` of encoded instruction data; ValueError if it is not ours."""
        try:
            named = self.coder.instruction.parse(data)
        except (construct.ConstructError, KeyError) as exc:
            raise ValueError(f"not an escrow instruction: {exc}") from None
        return str(named.name), named.data

    def instruction_discriminator(self, name: str) -> bytes:
        self._ix(name)
        return bytes(self.coder.instruction.sighashes[name])

    def account_discriminator(self, account: str) -> bytes:
        return bytes(self.coder.accounts.acc_name_to_discriminator[account])

    def encode_account(self, account: str, fields: Mapping[str, Any]) -> bytes:
        """Account data (discriminator + borsh) of ``account`` ("Config", "Channel") from
        snake_case ``fields``: for local chains and tests that place accounts directly."""
        named = NamedInstruction(name=account, data=dict(fields))
        return bytes(self.coder.accounts.build(named))

    def decode_config(self, address: Pubkey, data: bytes) -> ConfigState:
        c = self._decode("Config", address, data)
        return ConfigState(
            address=address,
            admin=c.admin,
            settler=c.settler,
            treasury=c.treasury,
            mints=tuple(c.mints[: c.mint_count]),
            channels_opened=int(c.channels_opened),
            dispute_window=int(c.dispute_window),
            fee_bps=int(c.fee_bps),
            bump=int(c.bump),
            version=int(c.version),
        )

    def decode_channel(self, address: Pubkey, data: bytes) -> ChannelAccount:
        c = self._decode("Channel", address, data)
        fields = (
            "channel_id",
            "open_nonce",
            "deposit",
            "settled",
            "paid",
            "fees",
            "expiry",
            "dispute_window",
            "fee_bps",
            "bump",
            "vault_bump",
            "version",
        )
        numbers = {f: int(getattr(c, f)) for f in fields}
        return ChannelAccount(
            address=address,
            renter=c.renter,
            provider=c.provider,
            mint=c.mint,
            vault=c.vault,
            **numbers,
        )

    def error(self, code: int) -> tuple[str, str] | None:
        """``(name, message)`` of a custom program error code from the IDL."""
        return self._errors.get(code)

    def _ix(self, name: str) -> Any:
        try:
            return self._instructions[name]
        except KeyError:
            raise ValueError(f"the escrow IDL has no instruction {name!r}") from None

    def _decode(self, account: str, address: Pubkey, data: bytes) -> Any:
        disc = self.account_discriminator(account)
        if data[:ACCOUNT_DISCRIMINATOR_SIZE] != disc:
            raise AccountDecodeError(address, account, "wrong discriminator")
        try:
            return self.coder.accounts.decode(data)
        except construct.ConstructError as exc:
            raise AccountDecodeError(address, account, str(exc)) from None


def default_idl() -> EscrowIdl:
    """The shipped IDL bound to :data:`dgpu.contracts.PROGRAM_ID` (parsed once)."""
    return idl_for(PROGRAM_ID)


@cache
def idl_for(program_id: Pubkey) -> EscrowIdl:
    """The shipped IDL bound to ``program_id``: the escrow deployed under another key (parsed
    once per program id). Every address, instruction and owner check of an
    :class:`EscrowClient` follows from it."""
    return EscrowIdl.load(program_id=program_id)
