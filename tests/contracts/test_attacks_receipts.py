"""Attacks on settlement through receipts and the Ed25519 precompile: every one is refused
by the real program and no token moves (``expect_refused`` checks every balance and every
open channel before and after)."""

from __future__ import annotations

import struct

from dgpu.contracts_client import (
    Settlement,
    SignedMessage,
    ed25519_instruction,
    settle_instructions,
)
from dgpu.contracts_client.ed25519 import (
    ED25519_PROGRAM_ID,
    OFFSETS_LEN,
    ed25519_data,
    parse_offsets,
)
from dgpu.contracts_client.pda import channel_address
from dgpu.protocol.receipt import ReceiptBody
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from tests.contracts.support import DGPU, World, expect_refused


def forged(body: ReceiptBody, cumulative: int) -> ReceiptBody:
    return ReceiptBody(body.program_id, body.channel, body.open_nonce, cumulative)


async def test_receipt_of_another_channel_is_refused(world: World) -> None:
    a, b = await world.open(), await world.open()
    for_a = world.receipt(a, DGPU)
    on_b = [SignedMessage.receipt(for_a.body, for_a.signature, a.renter)]
    settle = settle_instructions([world.receipt(b, DGPU)])[1]  # b's accounts
    attempt = world.send([ed25519_instruction(on_b), settle], world.admin)
    await expect_refused(world, "WrongReceipt", attempt)


async def test_receipt_replayed_after_reopening_is_refused(world: World) -> None:
    first = await world.open(5 * DGPU, channel_id=11)
    old = world.receipt(first, 2 * DGPU)
    await world.client.settle_batch(world.admin, [old])
    await world.client.cooperative_close(
        world.renter.keypair, world.provider.keypair, first.address, 2 * DGPU
    )
    world.channels.remove(first)
    again = await world.open(5 * DGPU, channel_id=11)
    assert again.address == first.address and again.vault == first.vault
    replay = Settlement(
        again.address, again.vault, old.provider_token, again.renter, old.body, old.signature
    )
    await expect_refused(world, "WrongReceipt", world.client.settle_batch(world.admin, [replay]))


async def test_receipt_for_another_program_is_refused(world: World) -> None:
    """A receipt for the same renter, provider and channel id under another deployment
    names that deployment's channel PDA, so it cannot settle this program's channel."""
    channel = await world.open(channel_id=21)
    genuine = world.receipt(channel, DGPU)
    other_program = Pubkey.new_unique()
    elsewhere = channel_address(channel.renter, channel.provider, 21, other_program)
    assert elsewhere != channel.address
    body = ReceiptBody(bytes(other_program), bytes(elsewhere), channel.open_nonce, DGPU)
    signed = [SignedMessage.receipt(body, body.sign(world.renter.identity), channel.renter)]
    settle = settle_instructions([genuine])[1]  # this program's channel accounts
    attempt = world.send([ed25519_instruction(signed), settle], world.admin)
    await expect_refused(world, "WrongReceipt", attempt)


async def test_lower_or_equal_cumulative_moves_nothing(world: World) -> None:
    channel = await world.open()
    await world.client.settle_batch(world.admin, [world.receipt(channel, 2 * DGPU)])
    before = await world.token_balances()
    state = await world.client.read_channel(channel.address)
    for cumulative in (2 * DGPU, DGPU, 0):
        sig = await world.client.settle_batch(world.admin, [world.receipt(channel, cumulative)])
        assert any("not above the settled mark" in line for line in world.logs(sig))
    assert await world.token_balances() == before
    assert await world.client.read_channel(channel.address) == state


async def test_receipt_signed_by_someone_else_is_refused(world: World) -> None:
    channel = await world.open()
    stranger = await world.party("stranger")
    for signer in (world.provider, stranger):
        genuine = world.receipt(channel, DGPU, signer=signer)
        # the precompile checks the signer's own key, so it passes; the program must not
        item = Settlement(
            channel.address,
            channel.vault,
            genuine.provider_token,
            signer.pubkey,
            genuine.body,
            genuine.signature,
        )
        attempt = world.client.settle_batch(world.admin, [item])
        await expect_refused(world, "WrongSigner", attempt)


async def test_bad_signature_fails_in_the_precompile(world: World) -> None:
    channel = await world.open()
    item = world.receipt(channel, DGPU)
    broken = bytes([item.signature[0] ^ 1]) + item.signature[1:]
    bad = Settlement(item.channel, item.vault, item.provider_token, item.renter, item.body, broken)
    refused = await expect_refused(world, None, world.client.settle_batch(world.admin, [bad]))
    assert refused.instruction_index == 0  # the precompile itself


def _retarget(data: bytes, field: int, index: int) -> bytes:
    """Precompile data whose first offsets entry takes ``field`` (0 signature, 1 key,
    2 message) from instruction ``index`` instead of its own data."""
    out = bytearray(data)
    index_at = {0: 2, 1: 6, 2: 12}[field]  # within Ed25519SignatureOffsets
    struct.pack_into("<H", out, 2 + index_at, index)
    return bytes(out)


async def test_precompile_pointing_at_another_instruction_is_refused(world: World) -> None:
    """Each of the three instruction indices is checked: the precompile verifies bytes of
    instruction 0 while its own data (what the program would read) says something else."""
    channel = await world.open(10 * DGPU)
    stranger = await world.party("stranger")
    real = world.receipt(channel, DGPU)
    high = forged(real.body, 9 * DGPU)
    settle = settle_instructions([real])[1]

    # message from elsewhere: a genuine low receipt is verified, a forged high one is read
    honest = ed25519_data([SignedMessage.receipt(real.body, real.signature, channel.renter)])
    lying = ed25519_data([SignedMessage(bytes(channel.renter), real.signature, high.to_bytes())])
    message_case = (honest, _retarget(lying, 2, 0))

    # key from elsewhere: the stranger signs the high receipt, the renter's key is read
    by_stranger = high.sign(stranger.identity)
    stranger_data = ed25519_data(
        [SignedMessage(bytes(stranger.pubkey), by_stranger, high.to_bytes())]
    )
    renter_data = ed25519_data([SignedMessage(bytes(channel.renter), by_stranger, high.to_bytes())])
    key_case = (stranger_data, _retarget(renter_data, 1, 0))

    # signature from elsewhere (same bytes, but still not the precompile's own data)
    signature_case = (honest, _retarget(honest, 0, 0))

    for carrier, pointing in (message_case, key_case, signature_case):
        ixs = [
            Instruction(ED25519_PROGRAM_ID, carrier, []),
            Instruction(ED25519_PROGRAM_ID, pointing, []),
            settle,
        ]
        await expect_refused(world, "BadSignatureOffsets", world.send(ixs, world.admin))

    # naming its own index explicitly instead of 0xFFFF is refused too (one rule, no aliases)
    own = _retarget(_retarget(_retarget(honest, 0, 0), 1, 0), 2, 0)
    attempt = world.send([Instruction(ED25519_PROGRAM_ID, own, []), settle], world.admin)
    await expect_refused(world, "BadSignatureOffsets", attempt)


async def test_settle_must_directly_follow_the_precompile(world: World) -> None:
    channel = await world.open()
    precompile, settle = settle_instructions([world.receipt(channel, DGPU)])
    await expect_refused(world, "MissingPrecompile", world.send([settle], world.admin))
    spaced = [precompile, set_compute_unit_limit(400_000), settle]
    await expect_refused(world, "MissingPrecompile", world.send(spaced, world.admin))


async def test_signature_count_must_match_the_channels(world: World) -> None:
    a, b = await world.open(), await world.open()
    one, two = world.receipt(a, DGPU), world.receipt(b, DGPU)
    precompile = settle_instructions([one])[0]
    settle_two = settle_instructions([one, two])[1]
    attempt = world.send([precompile, settle_two], world.admin)
    await expect_refused(world, "SignatureCount", attempt)
    assert len(parse_offsets(bytes(precompile.data))) == 1


async def test_message_of_wrong_length_is_refused(world: World) -> None:
    channel = await world.open()
    item = world.receipt(channel, DGPU)
    longer = item.body.to_bytes() + b"\0"
    signed = SignedMessage(bytes(channel.renter), world.renter.identity.sign_raw(longer), longer)
    settle = settle_instructions([item])[1]
    attempt = world.send([ed25519_instruction([signed]), settle], world.admin)
    await expect_refused(world, "BadSignatureOffsets", attempt)
    assert OFFSETS_LEN == 14


async def test_settlement_above_the_deposit_is_refused(world: World) -> None:
    channel = await world.open(3 * DGPU)
    for cumulative in (3 * DGPU + 1, 2**64 - 1):
        attempt = world.client.settle_batch(world.admin, [world.receipt(channel, cumulative)])
        await expect_refused(world, "AboveDeposit", attempt)
    # exactly the deposit is fine, and never more leaves the vault
    await world.client.settle_batch(world.admin, [world.receipt(channel, 3 * DGPU)])
    assert (
        await world.chain.get_token_balance(channel.vault)
        == (await world.client.read_channel(channel.address)).fees
    )


async def test_one_bad_receipt_fails_the_whole_batch(world: World) -> None:
    a, b = await world.open(), await world.open()
    good = world.receipt(a, DGPU)
    bad = world.receipt(b, 100 * DGPU)  # above b's deposit
    await expect_refused(world, "AboveDeposit", world.client.settle_batch(world.admin, [good, bad]))
