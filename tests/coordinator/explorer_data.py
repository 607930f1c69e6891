"""Fill a running coordinator with real signed offers, price history and a real
settlement through the escrow in LiteSVM (for the explorer tests and screenshots)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from dgpu.protocol.identity import Identity

from tests.coordinator.conftest import ADMIN, ManualClock, Server, client_for, offer_for
from tests.coordinator.escrow_world import DGPU, World

# (provider index, model, GPUs, VRAM MB, price per GPU-second, region, simulated): each
# provider's current offer, as a node advertises one at a time.
FLEET = [
    (0, "NVIDIA GeForce RTX 4090", 2, 24_564, 410_000, "eu-west", True),
    (1, "NVIDIA A100-SXM4-80GB", 8, 81_920, 1_150_000, "us-east", False),
    (2, "NVIDIA H100 80GB HBM3", 4, 81_559, 1_520_000, "us-east", False),
    (3, "NVIDIA GeForce RTX 4080", 1, 16_376, 290_000, "ap-south", True),
    (4, "Apple M3 Ultra", 1, 98_304, 460_000, "eu-central", True),
    (5, "NVIDIA H100 80GB HBM3", 8, 81_559, 1_480_000, "eu-west", False),
]
PROVIDERS = len(FLEET)
# Offers the same providers signed a minute earlier under another offer_id: still live (an
# hour of TTL) but superseded, so the explorer must neither count nor list them.
SUPERSEDED = [
    (0, "NVIDIA GeForce RTX 4090", 1, 24_564, 380_000, "eu-west", True),
    (4, "NVIDIA GeForce RTX 4080", 2, 16_376, 300_000, "eu-central", True),
]
HISTORY_STEPS = 12
STEP_S = 600


@dataclass(frozen=True)
class Filled:
    providers: list[Identity]
    settled_signatures: list[str]
    settled_amount: int
    world: World


async def fill(server: Server, world: World, clock: ManualClock) -> Filled:
    providers = [*world.providers]
    # Price history: the offer book grows step by step, snapshots follow the multiplier.
    for step in range(HISTORY_STEPS):
        upto = 1 + step * len(FLEET) // HISTORY_STEPS
        for index, model, count, vram, price, region, simulated in FLEET[: upto + 1]:
            provider = providers[index]
            async with client_for(server, provider) as client:
                offer = offer_for(
                    provider,
                    model=model,
                    count=count,
                    vram_mb=vram,
                    price=price + step * 1_000,
                    region=region,
                    simulated=simulated,
                    now=int(clock()),
                    ttl_s=900,
                    offer_id=bytes([index, len(model), count, vram % 251]) + b"\0" * 12,
                )
                await client.post_offer(offer)
        server.call(partial(server.coordinator.market.snapshot, int(clock())))
        clock.advance(STEP_S)
    # Jobs: channels on chain, receipts handed in by the providers, a settlement round.
    renter = world.renters[0]
    for k, provider in enumerate(providers[:3]):
        channel = await world.open(renter, provider, deposit=10 * DGPU)
        receipt = world.receipt(renter, channel, (k + 1) * 250_000_000)
        async with client_for(server, provider) as client:
            await client.post_receipt(receipt)
    async with client_for(server, ADMIN) as admin:
        report = await admin.run_settlement()
    # Keep every offer live for the pages: first the superseded ones, signed a minute
    # earlier with other ids, then each provider's current offer.
    for index, model, count, vram, price, region, simulated in SUPERSEDED:
        provider = providers[index]
        async with client_for(server, provider) as client:
            await client.post_offer(
                offer_for(
                    provider,
                    model=model,
                    count=count,
                    vram_mb=vram,
                    price=price,
                    region=region,
                    simulated=simulated,
                    now=int(clock()) - 60,
                    ttl_s=3600,
                    offer_id=bytes([0xEE, index]) + b"\0" * 14,
                )
            )
    for index, model, count, vram, price, region, simulated in FLEET:
        provider = providers[index]
        async with client_for(server, provider) as client:
            await client.post_offer(
                offer_for(
                    provider,
                    model=model,
                    count=count,
                    vram_mb=vram,
                    price=price,
                    region=region,
                    simulated=simulated,
                    now=int(clock()),
                    ttl_s=3600,
                    offer_id=bytes([index, len(model), count, vram % 251]) + b"\0" * 12,
                )
            )
    server.call(partial(server.coordinator.market.rescore_all, int(clock())))
    return Filled(providers, list(report["signatures"]), int(report["amount"]), world)
