"""The simulation ledger is the escrow program: the same random sequences of operations
(valid and invalid opens, settlement batches, refunds, clock warps) are driven through
:class:`~dgpu.simulations.nodes.ledger.EscrowLedger` and through the real escrow ``.so``
in LiteSVM, and every outcome, channel and token balance must agree after every step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgspec
import pytest
from dgpu.node.payments.escrow import ChannelState, Escrow
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from dgpu.simulations.nodes.chain import DISPUTE_WINDOW_S, LedgerChain, SimChain
from dgpu.simulations.nodes.svm import SvmChain

START = 1_700_000_000
BALANCE = 50_000


@dataclass
class Clock:
    now: int = START

    def __call__(self) -> int:
        return self.now


@dataclass
class Side:
    """One implementation, and the channels opened on it, by opening index."""

    chain: SimChain
    escrow: Escrow
    channels: list[ChannelState] = field(default_factory=list)


@dataclass(frozen=True)
class Open:
    renter: int
    provider: int
    deposit: int
    expiry: int


@dataclass(frozen=True)
class Item:
    channel: int
    cumulative: int
    signer: int
    forged: bool


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
class Step:
    name: str
    ok: bool


@dataclass(frozen=True)
class People:
    renters: list[Identity]
    providers: list[Identity]


def receipt(side: Side, item: Item, people: People) -> Receipt:
    state = side.channels[item.channel]
    signer = people.renters[item.signer]
    unsigned = Receipt(
        job_id=bytes(16),
        seq=1,
        renter=signer.public_key,
        program_id=side.escrow.program_id,
        channel=state.address,
        open_nonce=state.open_nonce,
        cumulative=item.cumulative,
    )
    signed = sign_receipt(unsigned, signer)
    return msgspec.structs.replace(signed, sig=bytes(64)) if item.forged else signed


async def apply(side: Side, op: Open | Settle | Refund, people: People) -> Step:
    try:
        if isinstance(op, Open):
            opened = await side.escrow.open_channel(
                people.renters[op.renter],
                provider=people.providers[op.provider].public_key,
                mint=side.chain.mint,
                deposit=op.deposit,
                expiry=op.expiry,
            )
            state = await side.escrow.read_channel(opened.address)
            assert state is not None
            side.channels.append(state)
        elif isinstance(op, Settle):
            receipts = [receipt(side, item, people) for item in op.items]
            await side.escrow.settle(people.providers[0], receipts)
        else:
            await side.escrow.refund(people.renters[0], side.channels[op.channel].address)
    except DgpuError:
        return Step(type(op).__name__, False)
    return Step(type(op).__name__, True)


def random_op(rng: random.Random, clock: Clock, opened: list[Open], marks: dict[int, int]) -> Op:
    """One operation, valid or not; ``opened`` are the openings that succeeded."""
    roll = rng.random()
    if roll < 0.25 or not opened:
        deposit = rng.choice([0, rng.randint(1, 20_000), rng.randint(1, 20_000), BALANCE * 2])
        expiry = clock.now + rng.choice([-10, 0, rng.randint(1, 3000), rng.randint(1, 3000)])
        return Open(rng.randrange(3), rng.randrange(2), deposit, expiry)
    if roll < 0.70:
        items = []
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(opened))
            deposit, mark = opened[index].deposit, marks.get(index, 0)
            cumulative = rng.choice(
                [rng.randint(0, deposit), rng.randint(mark, deposit), deposit, deposit + 1, mark]
            )
            renter = opened[index].renter
            signer = renter if rng.random() < 0.85 else (renter + 1) % 3
            items.append(Item(index, cumulative, signer, rng.random() < 0.05))
        return Settle(tuple(items))
    if roll < 0.85:
        return Refund(rng.randrange(len(opened)))
    if roll < 0.93:
        # A refund a second either side of the channel's reclaim time (expiry + window).
        index = rng.randrange(len(opened))
        return Refund(index, opened[index].expiry + DISPUTE_WINDOW_S + rng.choice([-1, 0]))
    return Warp(rng.choice([1, 60, 600, 3600, 7200]))


async def snapshot(side: Side, people: People) -> dict[str, object]:
    owners = [i.public_key for i in people.renters + people.providers]
    balances = [await side.chain.balance(o) for o in owners]
    states = []
    for state in side.channels:
        now = await side.escrow.read_channel(state.address)
        states.append(
            None
            if now is None
            else (now.open_nonce, now.deposit, now.settled, now.expiry - START, now.dispute_window)
        )
    return {
        "balances": balances,
        "treasury": await side.chain.balance(side.chain.treasury),
        "supply": await side.chain.supply(),
        "channels": states,
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_ledger_matches_the_program_in_litesvm(seed: int) -> None:
    clock = Clock()
    coordinator = Identity.from_label("eq/coordinator")
    treasury = Identity.from_label("eq/treasury").public_key
    people = People(
        renters=[Identity.from_label(f"eq/renter/{i}") for i in range(3)],
        providers=[Identity.from_label(f"eq/provider/{i}") for i in range(2)],
    )
    svm = await SvmChain.open(clock, coordinator=coordinator, treasury=treasury)
    ledger = LedgerChain(clock, coordinator, treasury)
    sides = [Side(svm, svm.escrow()), Side(ledger, ledger.escrow())]
    for side in sides:
        await side.chain.fund(people.renters, [*people.providers, coordinator], BALANCE)
    rng = random.Random(seed)
    opened: list[Open] = []
    marks: dict[int, int] = {}
    kinds: dict[tuple[str, bool], int] = {}
    for number in range(120):
        op = random_op(rng, clock, opened, marks)
        if isinstance(op, Warp):
            clock.now += op.seconds
            continue
        if isinstance(op, Refund) and op.at is not None:
            clock.now = max(clock.now, op.at)
        steps = [await apply(side, op, people) for side in sides]
        assert steps[0].ok == steps[1].ok, f"step {number} {op}: {steps}"
        kinds[(steps[0].name, steps[0].ok)] = kinds.get((steps[0].name, steps[0].ok), 0) + 1
        if isinstance(op, Open) and steps[0].ok:
            opened.append(op)
        if isinstance(op, Settle) and steps[0].ok:
            for index, state in enumerate(sides[1].channels):
                fresh = await sides[1].escrow.read_channel(state.address)
                if fresh is not None:
                    marks[index] = fresh.settled
        first, second = await snapshot(sides[0], people), await snapshot(sides[1], people)
        assert first == second, f"step {number} {op} diverged"
    # The sequence exercised both outcomes of every operation.
    for name in ("Open", "Settle", "Refund"):
        assert kinds.get((name, True), 0) > 0, kinds
        assert kinds.get((name, False), 0) > 0, kinds
