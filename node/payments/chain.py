"""The node's :class:`~dgpu.node.payments.escrow.Escrow` over the real escrow program.

A thin adapter from raw 32-byte keys and :class:`~dgpu.protocol.messages.Receipt` to
:class:`~dgpu.contracts_client.escrow.EscrowClient` (solders types) over any
:class:`~dgpu.contracts_client.chain.Chain`: LiteSVM in process, or JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Sequence

from dgpu.contracts_client.chain import Chain
from dgpu.contracts_client.chain.errors import AccountNotFound
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelState as ChainChannel
from dgpu.contracts_client.localnet import associated_token_address
from dgpu.node.payments.escrow import ChannelState, OpenedChannel, Refunded, Settled
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from solders.pubkey import Pubkey


def _state(chain_state: ChainChannel) -> ChannelState:
    return ChannelState(
        address=bytes(chain_state.address),
        renter=bytes(chain_state.renter),
        provider=bytes(chain_state.provider),
        mint=bytes(chain_state.mint),
        open_nonce=chain_state.open_nonce,
        deposit=chain_state.deposit,
        settled=chain_state.settled,
        expiry=chain_state.expiry,
        dispute_window=chain_state.dispute_window,
    )


class ChainEscrow:
    """:class:`Escrow` through ``EscrowClient`` (the program id is the client's)."""

    def __init__(self, client: EscrowClient) -> None:
        self.client = client
        self.chain: Chain = client.chain

    @property
    def program_id(self) -> bytes:
        return bytes(self.client.program_id)

    async def unix_time(self) -> int:
        return await self.chain.unix_time()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        (state,) = await self.client.read_channels([Pubkey.from_bytes(channel)])
        return None if state is None else _state(state)

    async def open_channel(
        self, renter: Identity, *, provider: bytes, mint: bytes, deposit: int, expiry: int
    ) -> OpenedChannel:
        opened = await self.client.open_channel(
            renter.to_solders(),
            provider=Pubkey.from_bytes(provider),
            mint=Pubkey.from_bytes(mint),
            deposit=deposit,
            expiry=expiry,
        )
        return OpenedChannel(
            address=bytes(opened.address),
            open_nonce=opened.state.open_nonce,
            deposit=opened.state.deposit,
            expiry=opened.state.expiry,
            signature=str(opened.signature),
        )

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        items = [
            await self.client.settlement(Pubkey.from_bytes(r.channel), r.cumulative, r.sig)
            for r in receipts
        ]
        signature = await self.client.settle_batch(payer.to_solders(), items)
        addresses = [Pubkey.from_bytes(r.channel) for r in receipts]
        states = await self.client.read_channels(addresses)
        marks = tuple(
            (bytes(address), state.settled if state is not None else receipt.cumulative)
            for address, state, receipt in zip(addresses, states, receipts, strict=True)
        )
        return Settled(str(signature), marks)

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        state = await self.client.read_channel(Pubkey.from_bytes(channel))
        signature = await self.client.refund(payer.to_solders(), state.address)
        return Refunded(str(signature), channel, state.deposit - state.settled)

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        account = associated_token_address(Pubkey.from_bytes(owner), Pubkey.from_bytes(mint))
        try:
            return await self.chain.get_token_balance(account)
        except AccountNotFound:
            return 0
