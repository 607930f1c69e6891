"""The simulation ledger is the escrow program: the same random sequences of operations
(valid and invalid opens, settlement batches, refunds, clock warps) are driven through
:class:`~dgpu.simulations.nodes.ledger.EscrowLedger` and through the real escrow ``.so``
in LiteSVM, and every outcome, channel and token balance must agree after every step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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


@dataclass
class Step:
    name: str
    ok: bool
    detail: str = ""


def receipt(side: Side, index: int, cumulative: int, signer: Identity, forged: bool) -> Receipt:
    state = side.channels[index]
    unsigned = Receipt(
        job_id=bytes(16),
        seq=1,
        renter=signer.public_key,
        program_id=side.escrow.program_id,
        channel=state.address,
        open_nonce=state.open_nonce,
        cumulative=cumulative,
    )
    signed = sign_receipt(unsigned, signer)
    if forged:
        return Receipt(
            **{**{f: getattr(signed, f) for f in signed.__struct_fields__}, "sig": bytes(64)}
        )
    return signed


async def apply(side: Side, op: tuple[object, ...], people: dict[str, list[Identity]]) -> Step:
    kind = op[0]
    try:
        if kind == "open":
            _, r, p, deposit, expiry = op
            renter, provider = people["renters"][r], people["providers"][p]  # type: ignore[index]
            opened = await side.escrow.open_channel(
                renter,
                provider=provider.public_key,
                mint=side.chain.mint,
                deposit=deposit,
                expiry=expiry,  # type: ignore[arg-type]
            )
            state = await side.escrow.read_channel(opened.address)
            assert state is not None
            side.channels.append(state)
            return Step("open", True, f"nonce {opened.open_nonce}")
        if kind == "settle":
            _, items = op
            receipts = [
                receipt(side, i, c, people["renters"][s], forged)
                for i, c, s, forged in items  # type: ignore[attr-defined]
            ]
            settled = await side.escrow.settle(people["providers"][0], receipts)
            return Step("settle", True, repr(sorted(settled.channels)[:0]))
        if kind == "refund":
            _, index = op
            refunded = await side.escrow.refund(
                people["renters"][0],
                side.channels[index].address,  # type: ignore[index]
            )
            return Step("refund", True, str(refunded.amount))
    except DgpuError:
        return Step(str(kind), False)
    raise AssertionError(f"unknown operation {op}")


def random_ops(
    rng: random.Random,
    clock: Clock,
    opened: list[tuple[int, int, int]],
    settled_hint: dict[int, int],
) -> tuple[object, ...]:
    """One operation; ``opened`` is (renter, deposit, expiry) per opening attempt that the
    caller saw succeed."""
    roll = rng.random()
    if roll < 0.25 or not opened:
        deposit = rng.choice([0, rng.randint(1, 20_000), rng.randint(1, 20_000), BALANCE * 2])
        expiry = clock.now + rng.choice([-10, 0, rng.randint(1, 3000), rng.randint(1, 3000)])
        return ("open", rng.randrange(3), rng.randrange(2), deposit, expiry)
    if roll < 0.70:
        items = []
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(opened))
            renter, deposit, _ = opened[index]
            mark = settled_hint.get(index, 0)
            cumulative = rng.choice(
                [rng.randint(0, deposit), rng.randint(mark, deposit), deposit, deposit + 1, mark]
            )
            signer = renter if rng.random() < 0.85 else (renter + 1) % 3
            items.append((index, cumulative, signer, rng.random() < 0.05))
        return ("settle", tuple(items))
    if roll < 0.85:
        return ("refund", rng.randrange(len(opened)))
    if roll < 0.93:
        # A refund a second either side of the channel's reclaim time (expiry + window).
        index = rng.randrange(len(opened))
        target = opened[index][2] + DISPUTE_WINDOW_S + rng.choice([-1, 0])
        return ("refund_at", index, target)
    return ("warp", rng.choice([1, 60, 600, 3600, 7200]))


async def snapshot(side: Side, people: dict[str, list[Identity]]) -> dict[str, object]:
    owners = [i.public_key for i in people["renters"] + people["providers"]]
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
    people = {
        "renters": [Identity.from_label(f"eq/renter/{i}") for i in range(3)],
        "providers": [Identity.from_label(f"eq/provider/{i}") for i in range(2)],
    }
    svm = await SvmChain.open(clock, coordinator=coordinator, treasury=treasury)
    ledger = LedgerChain(clock, coordinator, treasury)
    sides = [Side(svm, svm.escrow()), Side(ledger, ledger.escrow())]
    for side in sides:
        await side.chain.fund(people["renters"], [*people["providers"], coordinator], BALANCE)
    rng = random.Random(seed)
    opened: list[tuple[int, int, int]] = []
    marks: dict[int, int] = {}
    kinds: dict[tuple[str, bool], int] = {}
    for number in range(120):
        op = random_ops(rng, clock, opened, marks)
        if op[0] == "warp":
            clock.now += op[1]  # type: ignore[operator]
            continue
        if op[0] == "refund_at":
            clock.now = max(clock.now, op[2])  # type: ignore[call-overload]
            op = ("refund", op[1])
        steps = [await apply(side, op, people) for side in sides]
        assert steps[0].ok == steps[1].ok, f"step {number} {op}: {steps}"
        kinds[(steps[0].name, steps[0].ok)] = kinds.get((steps[0].name, steps[0].ok), 0) + 1
        if op[0] == "open" and steps[0].ok:
            _, r, _, deposit, expiry = op
            opened.append((r, deposit, expiry))  # type: ignore[arg-type]
        if op[0] == "settle" and steps[0].ok:
            for index, state in enumerate(sides[1].channels):
                fresh = await sides[1].escrow.read_channel(state.address)
                if fresh is not None:
                    marks[index] = fresh.settled
        first, second = await snapshot(sides[0], people), await snapshot(sides[1], people)
        assert first == second, f"step {number} {op} diverged"
    # The sequence exercised both outcomes of every operation.
    for name in ("open", "settle", "refund"):
        assert kinds.get((name, True), 0) > 0, kinds
        assert kinds.get((name, False), 0) > 0, kinds
