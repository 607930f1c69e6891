"""A small cluster of networks, once per implementation, for the interface suite."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from dgpu.node.net import (
    ByteStream,
    Faults,
    MemoryHub,
    MemoryHubConfig,
    MemoryNetwork,
    MemoryNetworkConfig,
    Network,
    open_memory_hub,
    open_memory_network,
)
from dgpu.node.net.records import offer_key, provider_key
from dgpu.protocol import Identity

CLUSTER_SIZE = 3
READ_TIMEOUT_S = 1.0


@dataclass
class Cluster:
    """``nets[0]`` is the bootstrap peer of the others (libp2p)."""

    kind: str
    nets: list[Any]
    identities: list[Identity]
    hub: MemoryHub | None = None

    def net(self, index: int) -> Network:
        network: Network = self.nets[index]
        return network

    async def raw_stream(self, src: int, dst: int, protocol: str) -> ByteStream:
        stream: ByteStream = await self.nets[src].open_raw_stream(self.nets[dst].peer_id, protocol)
        return stream

    def plant_offer_record(self, owner: str, value: bytes, model: str) -> None:
        """Store a record (and a provider record for ``owner``) on every peer, bypassing
        the receiving servers' validation: only the reader's checks remain."""
        key = offer_key(owner)
        if self.hub is not None:
            for peer in self.hub.peers:
                self.hub._values.setdefault(peer, {})[key] = value
                self.hub._providers.setdefault(peer, {}).setdefault(provider_key(model), {})[
                    owner
                ] = float("inf")
            return
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo

        for net in self.nets:
            dht = net._dht
            dht.value_store.put(key.encode(), value)
            dht.provider_store.add_provider(
                provider_key(model).encode(), PeerInfo(ID.from_base58(owner), [])
            )

    async def store_record_at(self, src: int, dst: int, key: str, value: bytes) -> bool:
        """Ask peer ``dst``'s DHT server to store a record (skipping ``src``'s own
        checks); whether ``dst`` now holds it."""
        if self.hub is not None:
            dst_peer = self.nets[dst].peer_id
            self.hub.store_value(self.nets[src].peer_id, key, value)
            return self.hub._values.get(dst_peer, {}).get(key) == value
        writer, holder = self.nets[src]._dht, self.nets[dst]._dht
        await writer.value_store._store_at_peer(holder.local_peer_id, key.encode(), value)
        record = holder.value_store.get(key.encode())
        return record is not None and record.value == value

    async def gossip_raw(self, src: int, data: bytes) -> None:
        """Publish arbitrary bytes on the offers topic from ``src``."""
        if self.hub is not None:
            self.hub.gossip(self.nets[src].peer_id, data)
            return
        services = self.nets[src]._services
        await services.pubsub.publish(services.config.offers_topic, data)


async def _memory_cluster(stack: AsyncExitStack) -> Cluster:
    hub = await stack.enter_async_context(
        open_memory_hub(MemoryHubConfig(faults=Faults(latency_s=0.001)), rng=random.Random(7))
    )
    identities = [Identity.from_label(f"mem-{i}") for i in range(CLUSTER_SIZE)]
    config = MemoryNetworkConfig(read_timeout_s=READ_TIMEOUT_S)
    nets: list[MemoryNetwork] = [
        await stack.enter_async_context(open_memory_network(hub, identity, config))
        for identity in identities
    ]
    return Cluster("memory", list(nets), identities, hub)


async def _libp2p_cluster(stack: AsyncExitStack) -> Cluster:
    from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network

    identities = [Identity.from_label(f"p2p-{i}") for i in range(CLUSTER_SIZE)]
    config = Libp2pConfig(read_timeout_s=READ_TIMEOUT_S)
    first = await stack.enter_async_context(open_libp2p_network(identities[0], config))
    joined = Libp2pConfig(read_timeout_s=READ_TIMEOUT_S, bootstrap=tuple(first.listen_addrs))
    nets = [first] + [
        await stack.enter_async_context(open_libp2p_network(identity, joined))
        for identity in identities[1:]
    ]
    return Cluster("libp2p", list(nets), identities)


@pytest.fixture(params=["memory", "libp2p"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            yield await _memory_cluster(stack)
        else:
            yield await _libp2p_cluster(stack)
