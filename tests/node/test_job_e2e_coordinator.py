"""Provider and renter with a coordinator: offers found through its index, receipts handed
to its settlement batcher, which pays the provider on chain (the escrow ``.so`` in
LiteSVM). The network is the in-memory one, in real time; the coordinator is a real
hypercorn server on a loopback port."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from dgpu.contracts_client.money import ChainEscrow
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.node.config import RenterConfig
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.node.gpu import SimulatedBackend, parse_gpu_spec
from dgpu.node.net import MemoryHubConfig, open_memory_hub, open_memory_network
from dgpu.node.provider import Provider, VirtualExecutor
from dgpu.node.renter import CoordinatorIndex, Renter
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity

from tests.coordinator.conftest import ADMIN, Server, make_config, running_server
from tests.node.realkit import FEE_BPS, PRICE, RENTER_TOKENS, Escrowed, make_escrow, provider_config
from tests.node.rolekit import job_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def world() -> Escrowed:
    return trio.run(make_escrow)


@pytest.fixture
def coordinator(tmp_path: Path, world: Escrowed) -> Iterator[Server]:
    settler = Identity.generate()
    trio.run(world.party, settler)
    backend = SettlementBackend(ChainEscrow(world.client), settler)
    config = make_config(tmp_path / "coord", admins=frozenset({ADMIN.address}))
    (tmp_path / "coord").mkdir()
    with running_server(config, backend=backend) as server:
        yield server


async def test_offers_through_the_index_and_settlement_through_the_coordinator(
    tmp_path: Path, world: Escrowed, coordinator: Server
) -> None:
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.party(provider_id)
    await world.party(renter_id, tokens=RENTER_TOKENS)
    hub_config = MemoryHubConfig(epoch=int(time.time()))
    async with (
        CoordinatorClient.open(coordinator.url, provider_id) as provider_desk,
        CoordinatorClient.open(coordinator.url, renter_id) as renter_index,
        open_memory_hub(hub_config, rng=random.Random(3)) as hub,
        open_memory_network(hub, provider_id) as pnet,
        open_memory_network(hub, renter_id) as rnet,
    ):
        with (
            NodeStore.open(tmp_path / "p.sqlite") as pstore,
            NodeStore.open(tmp_path / "r.sqlite") as rstore,
        ):
            provider = Provider(
                identity=provider_id,
                config=provider_config(world, allowed_images=frozenset({"dgpu/busybox:latest"})),
                network=pnet,
                escrow=ChainEscrow(world.client),
                executor=VirtualExecutor(),
                gpu_backend=SimulatedBackend(parse_gpu_spec("1xRTX 4090")),
                store=pstore,
                desk=provider_desk,
            )
            renter = Renter(
                identity=renter_id,
                config=RenterConfig(
                    mint=bytes(world.mint.address), program_id=bytes(world.client.program_id)
                ),
                network=rnet,
                escrow=ChainEscrow(world.client),
                store=rstore,
                index=CoordinatorIndex(renter_index),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(provider.run)
                spec = job_spec("echo via the coordinator; sleep 2")
                found = await renter.find_offers(renter.query_for(spec))
                assert found.source == "coordinator"
                assert [o.provider for o in found.offers] == [provider_id.public_key]
                result = await renter.run_job(spec, offers=found.offers)
                outcome = await provider.wait_job(result.job_id)
                assert result.state == "succeeded"
                assert outcome.paid == result.amount_paid == PRICE * result.seconds_billed
                # Handed to the coordinator, not settled by the provider itself.
                (record,) = pstore.settlements()
                assert record.status == "handed_off" and record.via == "coordinator"
                assert record.cumulative == result.amount_paid
                assert await world.tokens(provider_id) == 0
                async with CoordinatorClient.open(coordinator.url, ADMIN) as admin:
                    report = await admin.run_settlement()
                assert report["channels_settled"] == 1
                fee = result.amount_paid * FEE_BPS // 10_000
                assert await world.tokens(provider_id) == result.amount_paid - fee
                # The provider sees the chain paid it: nothing is left unsettled.
                await provider.settle_pending()
                assert pstore.unsettled_receipts() == []
                nursery.cancel_scope.cancel()
