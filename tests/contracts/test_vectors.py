"""The golden receipt vectors (``tests/vectors/receipts.json``) verified by the program.

Each vector names its own program id and channel address, so the real ``.so`` is loaded
at every vector's program id and a ``Channel`` account (encoded through the IDL) is placed
at the vector's channel address with the vector's renter and nonce. The channel takes a
100 % fee so that settling moves no token (the channel address is not a PDA that could
sign a transfer) while the program still checks tag, program id, channel, nonce and
signer, and records the cumulative amount it read from the vector's bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from dgpu.contracts import so_path
from dgpu.contracts_client import EscrowIdl, Settlement, settle_instructions
from dgpu.contracts_client.chain import LiteSVMChain, TransactionFailed, send_instructions
from dgpu.contracts_client.idl import default_idl
from dgpu.protocol.receipt import ReceiptBody
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.state import TokenAccount, TokenAccountState
from spl.token.constants import TOKEN_PROGRAM_ID

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "receipts.json").read_text())
U64_MAX = 2**64 - 1
SOL = 10**9


@dataclass(frozen=True)
class Vector:
    name: str
    program_id: Pubkey
    channel: Pubkey
    renter: Pubkey
    open_nonce: int
    cumulative: int
    message: bytes
    signature: bytes

    @classmethod
    def parse(cls, raw: dict[str, object]) -> Vector:
        def key(field: str) -> Pubkey:
            return Pubkey.from_bytes(bytes.fromhex(str(raw[field])))

        return cls(
            str(raw["name"]),
            key("program_id_hex"),
            key("channel_hex"),
            key("public_key_hex"),
            int(str(raw["open_nonce"])),
            int(str(raw["cumulative"])),
            bytes.fromhex(str(raw["message_hex"])),
            bytes.fromhex(str(raw["signature_hex"])),
        )


@dataclass(frozen=True)
class Placed:
    chain: LiteSVMChain
    idl: EscrowIdl
    settlement: Settlement
    payer: Keypair


async def place(vector: Vector, *, nonce: int | None = None, version: int = 1) -> Placed:
    chain = LiteSVMChain(escrow=False, programs={vector.program_id: so_path()})
    idl = EscrowIdl(default_idl().idl, vector.program_id)
    provider, mint, vault, provider_token = (Pubkey.new_unique() for _ in range(4))
    fields = {
        "renter": vector.renter,
        "provider": provider,
        "mint": mint,
        "vault": vault,
        "channel_id": 0,
        "open_nonce": vector.open_nonce if nonce is None else nonce,
        "deposit": U64_MAX,
        "settled": 0,
        "paid": 0,
        "fees": 0,
        "expiry": 2**40,
        "dispute_window": 0,
        "fee_bps": 10_000,
        "bump": 0,
        "vault_bump": 0,
        "version": version,
        "reserved": [0] * 3,
    }
    data = idl.encode_account("Channel", fields)
    chain.ledger.set_account(vector.channel, Account(SOL, data, vector.program_id))
    token = TokenAccount(mint, provider, 0, None, TokenAccountState.Initialized, None, 0, None)
    chain.ledger.set_account(provider_token, Account(SOL, bytes(token), TOKEN_PROGRAM_ID))
    body = ReceiptBody.from_bytes(vector.message, program_id=bytes(vector.program_id))
    item = Settlement(vector.channel, vault, provider_token, vector.renter, body, vector.signature)
    payer = Keypair()
    await chain.request_airdrop(payer.pubkey(), SOL)
    return Placed(chain, idl, item, payer)


@pytest.mark.parametrize("raw", VECTORS, ids=[str(v["name"]) for v in VECTORS])
async def test_program_accepts_the_golden_receipt(raw: dict[str, object]) -> None:
    vector = Vector.parse(raw)
    placed = await place(vector)
    assert placed.settlement.body.to_bytes() == vector.message
    assert placed.settlement.body.cumulative == vector.cumulative
    sig = await send_instructions(
        placed.chain, settle_instructions([placed.settlement], placed.idl), placed.payer
    )
    account = await placed.chain.get_account(vector.channel)
    assert account is not None
    state = placed.idl.decode_channel(vector.channel, bytes(account.data))
    assert state.settled == vector.cumulative
    assert (state.fees, state.paid) == (vector.cumulative, 0)
    (landed,) = placed.chain.ledger.statuses([sig])
    assert landed is not None
    skipped = any("not above the settled mark" in line for line in landed.logs)
    assert skipped == (vector.cumulative == 0)


@pytest.mark.parametrize("raw", VECTORS, ids=[str(v["name"]) for v in VECTORS])
async def test_program_refuses_the_golden_receipt_on_another_opening(
    raw: dict[str, object],
) -> None:
    vector = Vector.parse(raw)
    placed = await place(vector, nonce=(vector.open_nonce + 1) % 2**64)
    with pytest.raises(TransactionFailed) as refused:
        await send_instructions(
            placed.chain, settle_instructions([placed.settlement], placed.idl), placed.payer
        )
    assert placed.idl.error(refused.value.custom_code or 0) is not None
    assert placed.idl.error(refused.value.custom_code or 0) == (
        "WrongReceipt",
        "receipt is for another program, channel or opening",
    )


@pytest.mark.parametrize("raw", VECTORS, ids=[str(v["name"]) for v in VECTORS])
async def test_altered_golden_receipt_fails_the_precompile(raw: dict[str, object]) -> None:
    vector = Vector.parse(raw)
    placed = await place(vector)
    item = placed.settlement
    body = ReceiptBody.from_bytes(vector.message, program_id=bytes(vector.program_id))
    altered = ReceiptBody(body.program_id, body.channel, body.open_nonce, body.cumulative ^ 1)
    forged = Settlement(
        item.channel, item.vault, item.provider_token, item.renter, altered, item.signature
    )
    with pytest.raises(TransactionFailed) as refused:
        await send_instructions(
            placed.chain, settle_instructions([forged], placed.idl), placed.payer
        )
    assert refused.value.instruction_index == 0  # the Ed25519 precompile


@pytest.mark.parametrize("version", [0, 2, 255])
async def test_channel_layout_versions(version: int) -> None:
    """Version 0 (written before the byte existed, same layout) settles; a version this
    program does not know is not read as a channel at all."""
    vector = Vector.parse(VECTORS[1])
    placed = await place(vector, version=version)
    settle = settle_instructions([placed.settlement], placed.idl)
    if version == 0:
        await send_instructions(placed.chain, settle, placed.payer)
        return
    with pytest.raises(TransactionFailed) as refused:
        await send_instructions(placed.chain, settle, placed.payer)
    assert placed.idl.error(refused.value.custom_code or 0) == (
        "BadChannel",
        "channel account is not an open channel of this program",
    )
