"""Attack 6 of issue 12 peer to peer (``--p2p``): a DHT node keeps the first 20 provider
records of a key and ignores later ones (py-libp2p; LIBP2P.md hazard 14), so 20 fake
providers that advertise first hide a real one from every search of the DHT alone. The
offer books (gossip heard, peers asked) see past the cap; and a renter that has proven a
provider asks it directly as well, and ranks it first. In-memory network, virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio
import trio.testing
from dgpu.node.net import open_memory_network
from dgpu.node.net.memory import (
    MemoryHubConfig,
    MemoryNetwork,
    MemoryNetworkConfig,
    open_memory_hub,
)
from dgpu.node.net.offer_book import OfferBookConfig
from dgpu.node.renter import OfferQuery, PeerMemory, Standing, find_offers
from dgpu.node.renter.discovery import DIRECT_ASK_TIMEOUT_S
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import OfferTerms, make_offer

MINT = bytes(range(32))
FAKES = 20


def offer_of(identity: Identity, net: MemoryNetwork, price: int) -> Offer:
    terms = OfferTerms(
        gpu_model="RTX 4090",
        gpu_count=1,
        vram_mb=24_576,
        price_per_gpu_second=price,
        mint=MINT,
        region="eu",
        max_duration_s=3600,
        simulated=False,
    )
    return make_offer(identity, terms, multiaddrs=net.listen_addrs, now=net.now(), ttl_s=600)


DHT_ONLY = MemoryNetworkConfig(offer_book=OfferBookConfig(enabled=False))


@asynccontextmanager
async def crowded_swarm(
    *, books: bool = False
) -> AsyncIterator[tuple[MemoryNetwork, Offer, list[Offer]]]:
    """(the renter's network, the honest offer, the fakes' offers): every peer is up, the
    fakes advertise first, so every DHT node holding the model's key is full when the
    honest provider advertises (e.g. after a restart). Without ``books`` no peer keeps an
    offer book: the DHT alone is searched."""
    config = MemoryHubConfig(max_providers_per_key=20)
    net_config = None if books else DHT_ONLY
    async with open_memory_hub(config) as hub, AsyncExitStack() as stack:
        fake_nets = []
        for index in range(FAKES):
            identity = Identity.from_label(f"crowd-fake-{index}")
            net = await stack.enter_async_context(open_memory_network(hub, identity, net_config))
            fake_nets.append((identity, net))
        honest_id = Identity.from_label("crowd-honest")
        honest_net = await stack.enter_async_context(
            open_memory_network(hub, honest_id, net_config)
        )
        renter = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("crowd-renter"), net_config)
        )
        fakes = []
        for identity, net in fake_nets:
            fakes.append(offer_of(identity, net, price=1))
            await net.advertise(fakes[-1])
        honest = offer_of(honest_id, honest_net, price=400_000)
        await honest_net.advertise(honest)
        yield renter, honest, fakes


async def test_a_proven_provider_is_found_when_fakes_crowd_its_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with crowded_swarm() as (renter, honest, fakes):
        memory = PeerMemory(None, now=renter.now)
        memory.succeeded(honest.provider)
        query = OfferQuery("RTX 4090")
        # the DHT alone returns only fakes: the honest provider's record was ignored
        crowded = await find_offers(query, network=renter, p2p=True, standing=memory.standing)
        found = await find_offers(
            query, network=renter, p2p=True, standing=memory.standing, proven=memory.proven(8)
        )
    assert honest not in crowded.offers
    assert {o.provider for o in crowded.offers} <= {f.provider for f in fakes}
    assert found.offers[0] == honest and found.candidates[0].source == "direct"
    assert len(found.offers) == FAKES + 1
    assert memory.standing(honest.provider) is Standing.PROVEN


async def test_offer_books_see_past_the_dht_cap(autojump_clock: trio.testing.MockClock) -> None:
    """With offer books (the default) the honest provider is seen by a renter that has no
    history with it: it ranks after the cheaper fakes, but it is among the candidates."""
    async with crowded_swarm(books=True) as (renter, honest, fakes):
        found = await find_offers(OfferQuery("RTX 4090"), network=renter, p2p=True)
    assert found.seen == found.matched == FAKES + 1
    assert found.offers[-1] == honest
    assert {o.provider for o in found.offers[:-1]} == {f.provider for f in fakes}


async def test_a_proven_provider_that_is_gone_costs_the_search_nothing_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Asking a provider that no longer answers gives up within its short timeout before
    the DHT search; the fakes are still found and ranked."""
    async with crowded_swarm() as (renter, _honest, fakes):
        memory = PeerMemory(None, now=renter.now)
        gone = Identity.from_label("crowd-gone").public_key
        memory.succeeded(gone)
        start = trio.current_time()
        found = await find_offers(
            OfferQuery("RTX 4090"), network=renter, p2p=True, proven=memory.proven(8)
        )
        spent = trio.current_time() - start
    assert {o.provider for o in found.offers} == {f.provider for f in fakes}
    assert spent <= DIRECT_ASK_TIMEOUT_S + 20.0  # the ask's and the DHT search's timeouts
