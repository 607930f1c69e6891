"""The in-memory escrow is the program: the same random sequences of operations (valid and
invalid opens, settlement batches, refunds, clock warps) are driven through
:class:`~dgpu.contracts_client.money.MemoryEscrow` over a
:class:`~dgpu.contracts_client.money.MemoryLedger` and through
:class:`~dgpu.contracts_client.money.ChainEscrow` over the real escrow ``.so`` in LiteSVM;
every outcome, channel and token balance must agree after every step."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.money import (
    DEFAULT_BOUNDS,
    ChainEscrow,
    ChannelBounds,
    ChannelState,
    Escrow,
    MemoryEscrow,
    MemoryLedger,
    fee_of,
)
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from solders.pubkey import Pubkey

START = 1_700_000_000
BALANCE = 200_000
FEE_BPS = 500
DISPUTE_WINDOW = 3600
SOL = 10**9
MINT_SUPPLY_OFFSET = 36
STEPS = 200


@dataclass
class Clock:
    now: int = START

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True)
class People:
    renters: list[Identity]
    providers: list[Identity]
    treasury: Identity
    payer: Identity

    @property
    def holders(self) -> list[bytes]:
        return [i.public_key for i in [*self.renters, *self.providers, self.treasury]]


@dataclass
class Side:
    """One implementation, and the channels opened on it, by opening index."""

    escrow: Escrow
    mint: bytes
    other_mint: bytes
    """A real mint the program does not allow."""
    supply: Callable[[], Awaitable[int]]
    channels: list[ChannelState] = field(default_factory=list)


async def program_side(clock: Clock, people: People) -> Side:
    admin = Identity.from_label("eq/admin").to_solders()
    chain = LiteSVMChain(time_source=clock, upgrade_authority=admin)
    client = EscrowClient(chain)
    await chain.request_airdrop(admin.pubkey(), 100 * SOL)
    mint = await localnet.create_mint(chain, admin)
    other = await localnet.create_mint(chain, admin)
    for wallet in people.renters:
        await localnet.fund_wallet(
            chain, wallet.to_solders().pubkey(), lamports=10 * SOL, mint=mint, tokens=BALANCE
        )
        await localnet.fund_wallet(chain, wallet.to_solders().pubkey(), mint=other, tokens=BALANCE)
    for wallet in [*people.providers, people.treasury, people.payer]:
        await localnet.fund_wallet(
            chain, wallet.to_solders().pubkey(), lamports=10 * SOL, mint=mint
        )
    await client.initialize(
        admin,
        treasury=people.treasury.to_solders().pubkey(),
        mints=[mint.address],
        fee_bps=FEE_BPS,
        dispute_window=DISPUTE_WINDOW,
    )

    async def supply() -> int:
        account = await chain.get_account(mint.address)
        assert account is not None
        raw = bytes(account.data)[MINT_SUPPLY_OFFSET : MINT_SUPPLY_OFFSET + 8]
        return int.from_bytes(raw, "little")

    return Side(ChainEscrow(client), bytes(mint.address), bytes(other.address), supply)


def memory_side(clock: Clock, people: People) -> Side:
    mint, other = bytes(Pubkey.new_unique()), bytes(Pubkey.new_unique())
    ledger = MemoryLedger(
        now=clock,
        mints=[mint],
        treasury=people.treasury.public_key,
        fee_bps=FEE_BPS,
        dispute_window=DISPUTE_WINDOW,
    )
    for renter in people.renters:
        ledger.mint_to(renter.public_key, mint, BALANCE)
        ledger.mint_to(renter.public_key, other, BALANCE)

    async def supply() -> int:
        return ledger.supply(mint)

    return Side(MemoryEscrow(ledger), mint, other, supply)


@dataclass(frozen=True)
class Open:
    renter: int
    provider: int
    deposit: int
    expiry: int
    allowed_mint: bool = True
    bounds: ChannelBounds = DEFAULT_BOUNDS


@dataclass(frozen=True)
class Item:
    channel: int
    cumulative: int
    signer: int
    forged: bool
    nonce_shift: int = 0


@dataclass(frozen=True)
class Settle:
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Refund:
    channel: int
    at: int | None = None
    """Move the clock to this Unix time first (if later)."""


@dataclass(frozen=True)
class Warp:
    seconds: int


Op = Open | Settle | Refund | Warp


@dataclass
class Book:
    """What the sequence has done so far: openings that succeeded (by index), their
    settled marks, the ones refunded."""

    opened: list[Open] = field(default_factory=list)
    marks: dict[int, int] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)

    def any(self, rng: random.Random) -> int:
        return rng.randrange(len(self.opened))


def receipt(side: Side, item: Item, people: People) -> Receipt:
    state = side.channels[item.channel]
    signer = people.renters[item.signer]
    unsigned = Receipt(
        job_id=bytes(16),
        seq=1,
        renter=signer.public_key,
        program_id=side.escrow.program_id,
        channel=state.address,
        open_nonce=state.open_nonce + item.nonce_shift,
        cumulative=item.cumulative,
    )
    signed = sign_receipt(unsigned, signer)
    return msgspec.structs.replace(signed, sig=bytes(64)) if item.forged else signed


async def apply(side: Side, op: Open | Settle | Refund, people: People) -> tuple[object, ...]:
    """Run ``op`` on one side; what it returned, or that it failed."""
    try:
        if isinstance(op, Open):
            opened = await side.escrow.open_channel(
                people.renters[op.renter],
                provider=people.providers[op.provider].public_key,
                mint=side.mint if op.allowed_mint else side.other_mint,
                deposit=op.deposit,
                expiry=op.expiry,
                bounds=op.bounds,
            )
            state = await side.escrow.read_channel(opened.address)
            assert state is not None
            side.channels.append(state)
            return ("Open", True, opened.open_nonce, opened.deposit, opened.expiry)
        if isinstance(op, Settle):
            receipts = [receipt(side, item, people) for item in op.items]
            settled = await side.escrow.settle(people.payer, receipts)
            return ("Settle", True, tuple(mark for _, mark in settled.channels))
        address = side.channels[op.channel].address
        refunded = await side.escrow.refund(people.renters[0], address)
        return ("Refund", True, refunded.amount)
    except DgpuError:
        return (type(op).__name__, False)


def random_op(rng: random.Random, clock: Clock, book: Book) -> Op:
    """One operation, valid or (about a third of the time) not."""
    roll = rng.random()
    if roll < 0.25 or not book.opened:
        deposit = rng.choice([rng.randint(1, 20_000)] * 6 + [0, BALANCE * 2])
        expiry = clock.now + rng.choice([rng.randint(1, 3000)] * 6 + [-10, 0])
        allowed = rng.random() < 0.95
        bounds = DEFAULT_BOUNDS
        if rng.random() < 0.1:  # a renter's bounds right at or just below the config's terms
            fee = FEE_BPS - rng.randint(0, 1)
            bounds = ChannelBounds(fee, DISPUTE_WINDOW - rng.randint(0, 1))
        return Open(rng.randrange(3), rng.randrange(2), deposit, expiry, allowed, bounds)
    if roll < 0.70:
        live = [i for i in range(len(book.opened)) if i not in book.closed]
        items = []
        for _ in range(rng.randint(1, 3)):
            index = rng.choice(live) if live and rng.random() < 0.9 else book.any(rng)
            deposit, mark = book.opened[index].deposit, book.marks.get(index, 0)
            cumulative = rng.choice(
                [rng.randint(mark, deposit)] * 4 + [rng.randint(0, deposit), deposit, mark]
            )
            if rng.random() < 0.04:
                cumulative = deposit + 1
            renter = book.opened[index].renter
            signer = renter if rng.random() < 0.95 else (renter + 1) % 3
            shift = rng.choice([-1, 1]) if rng.random() < 0.03 else 0
            items.append(Item(index, cumulative, signer, rng.random() < 0.03, shift))
        return Settle(tuple(items))
    if roll < 0.85:
        return Refund(book.any(rng))
    if roll < 0.93:
        # A refund a second either side of the channel's reclaim time (expiry + window).
        index = book.any(rng)
        return Refund(index, book.opened[index].expiry + DISPUTE_WINDOW + rng.choice([-1, 0]))
    return Warp(rng.choice([1, 60, 600, 3600, 7200]))


async def snapshot(side: Side, people: People) -> dict[str, object]:
    balances = [await side.escrow.token_balance(owner, side.mint) for owner in people.holders]
    states = []
    for state in side.channels:
        now = await side.escrow.read_channel(state.address)
        states.append(
            None
            if now is None
            else (now.open_nonce, now.deposit, now.settled, now.expiry - START, now.dispute_window)
        )
    return {"balances": balances, "supply": await side.supply(), "channels": states}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_memory_escrow_matches_the_program_in_litesvm(seed: int) -> None:
    clock = Clock()
    people = People(
        renters=[Identity.from_label(f"eq/renter/{i}") for i in range(3)],
        providers=[Identity.from_label(f"eq/provider/{i}") for i in range(2)],
        treasury=Identity.from_label("eq/treasury"),
        payer=Identity.from_label("eq/payer"),
    )
    sides = [await program_side(clock, people), memory_side(clock, people)]
    rng = random.Random(seed)
    book = Book()
    kinds: dict[tuple[object, ...], int] = {}
    for number in range(STEPS):
        op = random_op(rng, clock, book)
        if isinstance(op, Warp):
            clock.now += op.seconds
            continue
        if isinstance(op, Refund) and op.at is not None:
            clock.now = max(clock.now, op.at)
        program, memory = [await apply(side, op, people) for side in sides]
        assert program == memory, f"step {number} {op}"
        kinds[program[:2]] = kinds.get(program[:2], 0) + 1
        if program[1] and isinstance(op, Open):
            book.opened.append(op)
        elif program[1] and isinstance(op, Refund):
            book.closed.add(op.channel)
        elif program[1] and isinstance(op, Settle):
            for item in op.items:
                fresh = await sides[1].escrow.read_channel(sides[1].channels[item.channel].address)
                assert fresh is not None
                book.marks[item.channel] = fresh.settled
        first, second = await snapshot(sides[0], people), await snapshot(sides[1], people)
        assert first == second, f"step {number} {op} diverged"
    # The sequence exercised both outcomes of every operation, and settled often.
    for name in ("Open", "Settle", "Refund"):
        assert kinds.get((name, True), 0) > 0, kinds
        assert kinds.get((name, False), 0) > 0, kinds
    assert kinds[("Settle", True)] >= STEPS // 10, kinds


async def test_fees_are_taken_on_the_cumulative_total_and_reach_the_treasury_at_refund() -> None:
    """Three settlements of 7 each at 500 bps: the fee is floor(21 * 5%) = 1, not three
    floors of 0; the treasury receives it only when the channel closes."""
    clock = Clock()
    renter, provider = Identity.from_label("fee/renter"), Identity.from_label("fee/provider")
    treasury = Identity.from_label("fee/treasury").public_key
    mint = bytes(32)
    ledger = MemoryLedger(now=clock, mints=[mint], treasury=treasury, fee_bps=FEE_BPS)
    ledger.mint_to(renter.public_key, mint, 100)
    escrow = MemoryEscrow(ledger)
    opened = await escrow.open_channel(
        renter, provider=provider.public_key, mint=mint, deposit=100, expiry=START + 10
    )
    for cumulative in (7, 14, 21):
        signed = sign_receipt(
            Receipt(
                job_id=bytes(16),
                seq=cumulative,
                renter=renter.public_key,
                program_id=escrow.program_id,
                channel=opened.address,
                open_nonce=opened.open_nonce,
                cumulative=cumulative,
            ),
            renter,
        )
        await escrow.settle(provider, [signed])
    assert fee_of(21, FEE_BPS) == 1
    assert ledger.balance(provider.public_key, mint) == 20
    assert ledger.balance(treasury, mint) == 0
    clock.now = START + 10 + ledger.dispute_window
    refunded = await escrow.refund(renter, opened.address)
    assert refunded.amount == 79
    assert ledger.balance(treasury, mint) == 1
    assert ledger.balance(renter.public_key, mint) == 79
    assert ledger.supply(mint) == 100 and ledger.channels == {}
