"""Random sequences of open / top-up / sign / settle / refund / close / reopen against the
real program in LiteSVM, checked after every step against a plain-Python model:

- per channel opening: deposits = paid to the provider + fees sent to the treasury +
  refunded to the renter + what the vault still holds;
- the provider never receives more than the highest receipt the renter signed;
- every token balance of the world is what the model says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio
from dgpu.contracts_client import ChannelAccount, Settlement
from dgpu.contracts_client.chain import TransactionFailed
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from solders.pubkey import Pubkey

from tests.contracts.support import (
    DISPUTE_WINDOW,
    FEE_BPS,
    RENTER_TOKENS,
    World,
    error_name,
    make_world,
)

T = TypeVar("T")
MAX_OPEN = 3
CHANNEL_IDS = st.integers(0, 2)  # few ids, so closed addresses get reopened
AMOUNTS = st.integers(1, 5_000_000)


def fee_of(amount: int) -> int:
    return amount * FEE_BPS // 10_000


@dataclass
class Opening:
    """The model of one opening of a channel address."""

    state: ChannelAccount
    deposit: int
    expiry: int
    signed: list[int] = field(default_factory=list)
    settled: int = 0
    paid: int = 0
    fees: int = 0
    fees_sent: int = 0
    refunded: int = 0
    open: bool = True

    def advance(self, cumulative: int) -> None:
        if cumulative <= self.settled:
            return
        fees = fee_of(cumulative)
        self.paid += (cumulative - self.settled) - (fees - self.fees)
        self.settled, self.fees = cumulative, fees

    def close(self) -> None:
        self.refunded = self.deposit - self.paid - self.fees
        self.fees_sent = self.fees
        self.open = False


class EscrowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World = self.run(make_world)
        self.openings: list[Opening] = []

    @staticmethod
    def run(fn: Callable[[], Awaitable[T]]) -> T:
        return trio.run(fn)

    def call(self, coro_fn: Callable[[], Awaitable[object]]) -> str | None:
        """Run a chain call; ``None`` if it succeeded, else the IDL error name (or "failed")."""

        async def attempt() -> str | None:
            try:
                await coro_fn()
            except TransactionFailed as exc:
                return error_name(self.world, exc) or "failed"
            return None

        return self.run(attempt)

    def live(self) -> list[Opening]:
        return [o for o in self.openings if o.open]

    # -- rules ----------------------------------------------------------------------------

    @precondition(lambda self: len(self.live()) < MAX_OPEN)
    @rule(channel_id=CHANNEL_IDS, deposit=AMOUNTS, expires_in=st.integers(1, 2 * DISPUTE_WINDOW))
    def open(self, channel_id: int, deposit: int, expires_in: int) -> None:
        async def go() -> ChannelAccount:
            return await self.world.open(deposit, expires_in=expires_in, channel_id=channel_id)

        taken = {o.state.channel_id for o in self.live()}
        if channel_id in taken:  # the address is in use: the System Program refuses
            assert self.call(go) == "failed"
            return
        state = self.run(go)
        self.openings.append(Opening(state, deposit, state.expiry))

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), amount=st.integers(0, 1_000_000), extend=st.integers(0, 600))
    def top_up(self, data: st.DataObject, amount: int, extend: int) -> None:
        o = data.draw(st.sampled_from(self.live()))
        w = self.world
        error = self.call(
            lambda: w.client.top_up(
                w.renter.keypair, o.state.address, amount, expiry=o.expiry + extend
            )
        )
        if amount == 0 and extend == 0:
            assert error == "ZeroAmount"
            return
        assert error is None
        o.deposit += amount
        o.expiry += extend

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), step=st.integers(0, 3_000_000))
    def sign(self, data: st.DataObject, step: int) -> None:
        """The renter signs a receipt, usually above the last one, sometimes not."""
        o = data.draw(st.sampled_from(self.live()))
        base = max(o.signed, default=0)
        o.signed.append(data.draw(st.sampled_from([base + step, max(0, base - step)])))

    @precondition(lambda self: any(o.signed for o in self.live()))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        """Anyone submits up to three signed receipts (old ones included) in one batch."""
        candidates = [o for o in self.live() if o.signed]
        picks = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3))
        items = [(o, data.draw(st.sampled_from(o.signed))) for o in picks]
        batch = [self.world.receipt(o.state, c) for o, c in items]
        error = self.call(lambda: self.world.client.settle_batch(self.world.admin, batch))
        if any(c > o.deposit for o, c in items):
            assert error == "AboveDeposit"
            return
        assert error is None
        for o, c in items:
            o.advance(c)

    @precondition(lambda self: any(not o.open and o.signed for o in self.openings))
    @rule(data=st.data())
    def replay_closed(self, data: st.DataObject) -> None:
        """A receipt of a closed opening settles nothing, reopened or not."""
        o = data.draw(st.sampled_from([o for o in self.openings if not o.open and o.signed]))
        body = o.state.receipt(max(o.signed))
        item = Settlement(
            o.state.address,
            o.state.vault,
            self.world.provider.token,
            o.state.renter,
            body,
            body.sign(self.world.renter.identity),
        )
        reopened = any(x.state.address == o.state.address for x in self.live())
        error = self.call(lambda: self.world.client.settle_batch(self.world.admin, [item]))
        assert error == ("WrongReceipt" if reopened else "BadChannel")

    @rule(seconds=st.integers(0, 2 * DISPUTE_WINDOW))
    def warp(self, seconds: int) -> None:
        self.world.chain.warp(seconds)

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        o = data.draw(st.sampled_from(self.live()))
        now = self.run(self.world.chain.unix_time)
        error = self.call(lambda: self.world.client.refund(self.world.admin, o.state.address))
        if now < o.expiry + DISPUTE_WINDOW:
            assert error == "NotExpired"
            return
        assert error is None
        o.close()

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), extra=st.integers(0, 1_000_000))
    def close_together(self, data: st.DataObject, extra: int) -> None:
        o = data.draw(st.sampled_from(self.live()))
        cumulative = data.draw(st.sampled_from([o.settled, o.settled + extra, o.deposit + 1]))
        w = self.world
        renter, provider = w.renter.keypair, w.provider.keypair
        error = self.call(
            lambda: w.client.cooperative_close(renter, provider, o.state.address, cumulative)
        )
        if cumulative > o.settled and cumulative > o.deposit:
            assert error == "AboveDeposit"
            return
        assert error is None
        o.signed.append(cumulative)  # both signed the close: it counts as signed
        o.advance(cumulative)
        o.close()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def chain_matches_model(self) -> None:
        w = self.world
        live = self.live()

        async def read() -> tuple[list[ChannelAccount | None], dict[Pubkey, int]]:
            states = await w.client.read_channels([o.state.address for o in live])
            vaults = [o.state.vault for o in live]
            return states, await w.token_balances(vaults)

        states, balances = self.run(read)
        for o, state in zip(live, states, strict=True):
            assert state is not None
            assert (state.deposit, state.settled, state.paid, state.fees) == (
                o.deposit,
                o.settled,
                o.paid,
                o.fees,
            )
            assert state.open_nonce == o.state.open_nonce
        for o in self.openings:
            vault = balances[o.state.vault] if o.open else 0
            assert o.deposit == o.paid + o.fees_sent + o.refunded + vault
            assert o.paid + o.fees <= max(o.signed, default=0)
        assert balances[w.provider.token] == sum(o.paid for o in self.openings)
        assert balances[w.treasury.token] == sum(o.fees_sent for o in self.openings)
        assert balances[w.renter.token] == RENTER_TOKENS - sum(
            o.deposit - o.refunded for o in self.openings
        )


EscrowMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEscrowStateMachine = EscrowMachine.TestCase
