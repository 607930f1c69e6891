"""The IDL-driven client without a chain: Anchor discriminators, borsh layouts (golden
bytes and round trips), the Ed25519 precompile data, PDAs and transaction sizes."""

from __future__ import annotations

import hashlib
import struct

import pytest
from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client import (
    PACKET_DATA_SIZE,
    ChannelBounds,
    EscrowClientError,
    EscrowProgramError,
    SignedMessage,
    channel_address,
    default_idl,
    receipts_per_transaction,
    vault_address,
)
from dgpu.contracts_client.chain import TransactionFailed
from dgpu.contracts_client.ed25519 import SAME_INSTRUCTION, ed25519_data, parse_offsets
from dgpu.contracts_client.instructions import open_channel_ix
from dgpu.contracts_client.settlement import batch_size
from dgpu.protocol.identity import Identity
from dgpu.protocol.receipt import ReceiptBody
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)


def test_instruction_discriminators_follow_anchor() -> None:
    idl = default_idl()
    for name in idl.instruction_names:
        expected = hashlib.sha256(f"global:{name}".encode()).digest()[:8]
        assert idl.instruction_discriminator(name) == expected
    for account in ("Config", "Channel"):
        expected = hashlib.sha256(f"account:{account}".encode()).digest()[:8]
        assert idl.account_discriminator(account) == expected


def test_open_channel_golden_bytes() -> None:
    renter, provider, mint = (Pubkey.from_bytes(bytes([i]) * 32) for i in (1, 2, 3))
    ix, channel = open_channel_ix(
        renter,
        provider=provider,
        mint=mint,
        channel_id=5,
        deposit=1_000_000_000,
        expiry=1_750_000_000,
        bounds=ChannelBounds(750, 86_400),
    )
    disc = hashlib.sha256(b"global:open_channel").digest()[:8]
    args = struct.pack("<QQqHq", 5, 1_000_000_000, 1_750_000_000, 750, 86_400)
    assert bytes(ix.data) == disc + args
    assert ix.program_id == PROGRAM_ID
    names = default_idl().account_names("open_channel")
    assert names[:5] == ("renter", "provider", "mint", "config", "channel")
    assert ix.accounts[0].is_signer and ix.accounts[0].is_writable
    assert not ix.accounts[1].is_signer and not ix.accounts[1].is_writable
    assert ix.accounts[4].pubkey == channel == channel_address(renter, provider, 5)
    assert ix.accounts[5].pubkey == vault_address(channel)
    seeds = [b"channel", bytes(renter), bytes(provider), (5).to_bytes(8, "little")]
    assert channel == Pubkey.find_program_address(seeds, PROGRAM_ID)[0]


@given(channel_id=U64, deposit=U64, expiry=I64)
def test_instruction_round_trip(channel_id: int, deposit: int, expiry: int) -> None:
    idl = default_idl()
    key = Pubkey.new_unique()
    ix, _ = open_channel_ix(
        key, provider=key, mint=key, channel_id=channel_id, deposit=deposit, expiry=expiry
    )
    name, args = idl.decode_instruction(bytes(ix.data))
    assert name == "open_channel"
    assert (args.channel_id, args.deposit, args.expiry) == (channel_id, deposit, expiry)


@given(deposit=U64, settled=U64, expiry=I64, fee_bps=st.integers(0, 10_000))
def test_channel_account_round_trip(deposit: int, settled: int, expiry: int, fee_bps: int) -> None:
    idl = default_idl()
    keys = [Pubkey.new_unique() for _ in range(5)]
    fields = {
        "renter": keys[0],
        "provider": keys[1],
        "mint": keys[2],
        "vault": keys[3],
        "channel_id": 9,
        "open_nonce": 4,
        "deposit": deposit,
        "settled": settled,
        "paid": 1,
        "fees": 2,
        "expiry": expiry,
        "dispute_window": 60,
        "fee_bps": fee_bps,
        "bump": 254,
        "vault_bump": 253,
        "version": 1,
        "reserved": [0] * 3,
    }
    data = idl.encode_account("Channel", fields)
    assert len(data) == 208
    state = idl.decode_channel(keys[4], data)
    assert (state.deposit, state.settled, state.expiry, state.fee_bps) == (
        deposit,
        settled,
        expiry,
        fee_bps,
    )
    assert state.receipt(7).to_bytes()[16:48] == bytes(keys[4])


def test_precompile_data_layout() -> None:
    renter = Identity.from_label("renter")
    bodies = [ReceiptBody(bytes(PROGRAM_ID), bytes(32 * [i]), i, 10 * i) for i in (1, 2)]
    items = [SignedMessage(renter.public_key, b.sign(renter), b.to_bytes()) for b in bodies]
    data = ed25519_data(items)
    offsets = parse_offsets(data)
    assert data[0] == 2
    assert [o.public_key_offset for o in offsets] == [30, 30]  # one shared key
    for item, o in zip(items, offsets, strict=True):
        assert {
            o.signature_instruction_index,
            o.public_key_instruction_index,
            o.message_instruction_index,
        } == {SAME_INSTRUCTION}
        assert data[o.public_key_offset : o.public_key_offset + 32] == item.public_key
        assert data[o.signature_offset : o.signature_offset + 64] == item.signature
        end = o.message_data_offset + o.message_data_size
        assert data[o.message_data_offset : end] == item.message
    with pytest.raises(ValueError, match="1 to 255"):
        ed25519_data([])


def test_receipts_per_transaction() -> None:
    without, with_table = (receipts_per_transaction(with_lookup_table=t) for t in (False, True))
    assert (without, with_table) == (3, 5)  # issue goal: at least 5 with a lookup table
    assert batch_size(without, with_lookup_table=False) <= PACKET_DATA_SIZE
    assert batch_size(without + 1, with_lookup_table=False) > PACKET_DATA_SIZE
    assert batch_size(with_table + 1, with_lookup_table=True) > PACKET_DATA_SIZE


def test_program_error_is_both_a_client_and_a_chain_error() -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(6017))
    failure = TransactionFailed(err, ["Program log: x"])
    name, text = default_idl().error(6017) or ("", "")
    exc = EscrowProgramError(failure, 6017, name, text)
    assert isinstance(exc, EscrowClientError)
    assert isinstance(exc, TransactionFailed)
    assert exc.custom_code == 6017 and exc.name == "WrongReceipt"
    assert "WrongReceipt" in str(exc)
