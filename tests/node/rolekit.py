"""A provider and a renter on the in-memory network with the in-memory escrow, for tests
that run under trio's MockClock (the same classes the real network and chain drive)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from dgpu.contracts_client.money import MemoryEscrow, MemoryLedger
from dgpu.node.config import ProviderConfig, ProviderFaults, RenterConfig, RenterFaults
from dgpu.node.gpu import SimulatedBackend, parse_gpu_spec
from dgpu.node.net import MemoryHub, MemoryHubConfig, open_memory_hub, open_memory_network
from dgpu.node.provider import OfferDesk, Provider, VirtualExecutor
from dgpu.node.renter import Renter
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from dgpu.protocol.negotiation import JobSpec

MINT = hashlib.sha256(b"test-mint").digest()
PRICE = 1_000  # base units per GPU-second
RENTER_FUNDS = 10**12
IMAGE = "dgpu/busybox:latest"


def provider_config(ledger: MemoryLedger, **changes: object) -> ProviderConfig:
    base = ProviderConfig(
        mint=MINT,
        program_id=ledger.program_id,
        price_per_gpu_second=PRICE,
        allowed_images=frozenset({IMAGE}),
        max_duration_s=3600,
        interval_s=1,
        grace_s=2,
        offer_ttl_s=120,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def job_spec(script: str, **changes: object) -> JobSpec:
    base = JobSpec(
        image=IMAGE,
        command=("sh", "-c", script),
        gpu_model="RTX 4090",
        gpu_count=1,
        max_duration_s=600,
        max_price_per_gpu_second=PRICE * 2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class MemoryMarket:
    hub: MemoryHub
    ledger: MemoryLedger
    provider: Provider
    renter: Renter
    provider_id: Identity
    renter_id: Identity
    executor: VirtualExecutor
    provider_store: NodeStore
    nursery: trio.Nursery


@asynccontextmanager
async def memory_market(
    tmp_path: Path,
    *,
    provider_faults: ProviderFaults | None = None,
    renter_faults: RenterFaults | None = None,
    provider_changes: dict[str, object] | None = None,
    label: str = "m",
    desk: Callable[[MemoryLedger], OfferDesk] | None = None,
) -> AsyncIterator[MemoryMarket]:
    """One provider and one renter; ``desk`` makes the provider's coordinator."""
    provider_id = Identity.from_label(f"{label}-provider")
    renter_id = Identity.from_label(f"{label}-renter")
    async with open_memory_hub(MemoryHubConfig(), rng=random.Random(5)) as hub:
        ledger = MemoryLedger(now=hub.now, mints=[MINT], dispute_window=60)
        ledger.mint_to(renter_id.public_key, MINT, RENTER_FUNDS)
        changes = dict(provider_changes or {})
        if provider_faults is not None:
            changes["faults"] = provider_faults
        executor = VirtualExecutor()
        with (
            NodeStore.open(tmp_path / f"{label}-provider.sqlite") as pstore,
            NodeStore.open(tmp_path / f"{label}-renter.sqlite") as rstore,
        ):
            async with (
                open_memory_network(hub, provider_id) as pnet,
                open_memory_network(hub, renter_id) as rnet,
            ):
                provider = Provider(
                    identity=provider_id,
                    config=provider_config(ledger, **changes),
                    network=pnet,
                    escrow=MemoryEscrow(ledger),
                    executor=executor,
                    gpu_backend=SimulatedBackend(parse_gpu_spec("2xRTX 4090")),
                    store=pstore,
                    desk=None if desk is None else desk(ledger),
                    outputs_dir=tmp_path / f"{label}-outputs",
                )
                renter = Renter(
                    identity=renter_id,
                    config=RenterConfig(
                        mint=MINT,
                        program_id=ledger.program_id,
                        faults=renter_faults or RenterFaults(),
                    ),
                    network=rnet,
                    escrow=MemoryEscrow(ledger),
                    store=rstore,
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(provider.run)
                    yield MemoryMarket(
                        hub,
                        ledger,
                        provider,
                        renter,
                        provider_id,
                        renter_id,
                        executor,
                        pstore,
                        nursery,
                    )
                    nursery.cancel_scope.cancel()
