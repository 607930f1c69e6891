"""Real parts for the role tests: the escrow ``.so`` in LiteSVM, libp2p on loopback,
Docker Engine, outputs over the bulk channel (TCP on loopback). One provider and one
renter, in this process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.money import ChainEscrow
from dgpu.node.config import ProviderConfig, ProviderFaults, RenterConfig, RenterFaults
from dgpu.node.executors import DockerConfig, DockerExecutor, open_docker_executor
from dgpu.node.gpu import SimulatedBackend, parse_gpu_spec
from dgpu.node.net.libp2p import Libp2pConfig, Libp2pNetwork, open_libp2p_network
from dgpu.node.provider import BulkOutputHost, Provider, open_bulk_output_host
from dgpu.node.renter import BulkOutputFetcher, Renter, StreamOutputFetcher
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.fixtures_docker import DOCKER_URL, TEST_IMAGE

SOL = 10**9
PRICE = 2_000  # base units per GPU-second
RENTER_TOKENS = 10**12
FEE_BPS = 500
DISPUTE_WINDOW = 30


@dataclass
class Escrowed:
    """A LiteSVM chain with the escrow initialized and funded parties."""

    chain: LiteSVMChain
    client: EscrowClient
    mint: localnet.TokenMint
    treasury: Identity

    async def party(self, identity: Identity, tokens: int = 0) -> Pubkey:
        account = await localnet.fund_wallet(
            self.chain,
            identity.to_solders().pubkey(),
            lamports=10 * SOL,
            mint=self.mint,
            tokens=tokens,
        )
        assert account is not None
        return account

    async def tokens(self, identity: Identity) -> int:
        return await ChainEscrow(self.client).token_balance(
            identity.public_key, bytes(self.mint.address)
        )


async def make_escrow() -> Escrowed:
    admin = Keypair()
    chain = LiteSVMChain(time_source=lambda: int(time.time()), upgrade_authority=admin)
    await chain.request_airdrop(admin.pubkey(), 100 * SOL)
    mint = await localnet.create_mint(chain, admin)
    client = EscrowClient(chain)
    world = Escrowed(chain, client, mint, Identity.generate())
    await world.party(world.treasury)
    await client.initialize(
        admin,
        treasury=world.treasury.to_solders().pubkey(),
        mints=[mint.address],
        fee_bps=FEE_BPS,
        dispute_window=DISPUTE_WINDOW,
    )
    return world


def provider_config(world: Escrowed, **changes: object) -> ProviderConfig:
    base = ProviderConfig(
        mint=bytes(world.mint.address),
        program_id=bytes(world.client.program_id),
        price_per_gpu_second=PRICE,
        allowed_images=frozenset({TEST_IMAGE}),
        max_duration_s=600,
        interval_s=1,
        grace_s=2,
        offer_ttl_s=120,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class RealMarket:
    world: Escrowed
    provider: Provider
    renter: Renter
    provider_id: Identity
    renter_id: Identity
    docker: DockerExecutor
    provider_net: Libp2pNetwork
    renter_net: Libp2pNetwork
    nursery: trio.Nursery
    outputs: BulkOutputHost
    fetcher: BulkOutputFetcher


@asynccontextmanager
async def real_market(
    tmp_path: Path,
    *,
    provider_faults: ProviderFaults | None = None,
    renter_faults: RenterFaults | None = None,
    provider_changes: dict[str, object] | None = None,
) -> AsyncIterator[RealMarket]:
    world = await make_escrow()
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.party(provider_id)
    await world.party(renter_id, tokens=RENTER_TOKENS)
    changes: dict[str, object] = dict(provider_changes or {})
    if provider_faults is not None:
        changes["faults"] = provider_faults
    docker_config = DockerConfig(
        owner=provider_id.address, base_url=DOCKER_URL, workdir=tmp_path, stop_grace_s=1.0
    )
    with (
        NodeStore.open(tmp_path / "provider.sqlite") as pstore,
        NodeStore.open(tmp_path / "renter.sqlite") as rstore,
    ):
        async with (
            open_docker_executor(docker_config) as docker,
            open_libp2p_network(provider_id, Libp2pConfig()) as pnet,
            open_libp2p_network(renter_id, Libp2pConfig(bootstrap=(pnet.listen_addrs[0],))) as rnet,
            open_bulk_output_host(provider_id, tmp_path / "bulk") as outputs,
        ):
            fetcher = BulkOutputFetcher(renter_id, fallback=StreamOutputFetcher(rnet))
            provider = Provider(
                identity=provider_id,
                config=provider_config(world, **changes),
                network=pnet,
                escrow=ChainEscrow(world.client),
                executor=docker,
                gpu_backend=SimulatedBackend(parse_gpu_spec("1xRTX 4090")),
                store=pstore,
                outputs=outputs,
                outputs_dir=tmp_path / "outputs",
            )
            renter = Renter(
                identity=renter_id,
                config=RenterConfig(
                    mint=bytes(world.mint.address),
                    program_id=bytes(world.client.program_id),
                    faults=renter_faults or RenterFaults(),
                ),
                network=rnet,
                escrow=ChainEscrow(world.client),
                store=rstore,
                fetcher=fetcher,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(provider.run)
                yield RealMarket(
                    world,
                    provider,
                    renter,
                    provider_id,
                    renter_id,
                    docker,
                    pnet,
                    rnet,
                    nursery,
                    outputs,
                    fetcher,
                )
                nursery.cancel_scope.cancel()
