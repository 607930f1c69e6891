"""The offer book (node/net/offer_book.py): what it keeps, how a peer's answer is read, and
that a search sees past the DHT's 20 providers per key — in memory (virtual time) and over
real libp2p hosts."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import msgspec
import pytest
import trio
import trio.testing
from dgpu.node.net import MemoryNetworkConfig, open_memory_network
from dgpu.node.net.interface import OFFER_BOOK_PROTOCOL, MessageStream, PeerRef
from dgpu.node.net.libp2p import Libp2pConfig, Libp2pNetwork, open_libp2p_network
from dgpu.node.net.memory import MemoryHubConfig, MemoryNetwork, open_memory_hub
from dgpu.node.net.offer_book import OfferBook, OfferBookConfig, read_book_answer
from dgpu.protocol import Identity
from dgpu.protocol.codec import decode, encode
from dgpu.protocol.errors import DecodeError
from dgpu.protocol.messages import MAX_BOOK_ANSWER, Offer, OfferBookPage, OfferBookQuery

from tests.node.net.helpers import forged, offer_of

NOW = 1_700_000_000
DHT_CAP = 20
DHT_ONLY = MemoryNetworkConfig(offer_book=OfferBookConfig(enabled=False))


def ids(prefix: str, count: int) -> list[Identity]:
    return [Identity.from_label(f"{prefix}-{i}") for i in range(count)]


# -- the book itself (pure) ----------------------------------------------------------------


def test_the_newest_offer_of_a_provider_replaces_older_ones() -> None:
    book = OfferBook()
    (a,) = ids("book-a", 1)
    old = offer_of(a, now=NOW, price=5)
    new = offer_of(a, now=NOW + 10, price=7, model="A100")
    assert book.add(old, now=NOW)
    assert book.add(new, now=NOW + 10)
    assert not book.add(old, now=NOW + 10)  # older: ignored, even arriving later
    assert book.find("A100", now=NOW + 10) == [new]
    assert book.find("H100", now=NOW + 10) == []  # the provider moved models
    assert len(book) == 1


def test_expired_offers_are_neither_kept_nor_found() -> None:
    book = OfferBook()
    a, b = ids("book-exp", 2)
    assert not book.add(offer_of(a, now=NOW - 400, ttl_s=300), now=NOW)
    short = offer_of(b, now=NOW, ttl_s=60)
    assert book.add(short, now=NOW)
    assert book.find("H100", now=NOW + 59) == [short]
    assert book.find("H100", now=NOW + 60) == []
    assert len(book) == 0


def test_a_full_shelf_keeps_the_providers_it_holds() -> None:
    """A full shelf refuses newcomers, however cheap (a flood of fresh keys at price 1 must
    not push out known providers), takes newer offers of the providers it holds, and makes
    room as offers expire."""
    book = OfferBook(OfferBookConfig(per_model=3))
    people = ids("book-full", 4)
    for person, price in zip(people[:3], (30, 10, 20), strict=True):
        assert book.add(offer_of(person, now=NOW, price=price, ttl_s=100 + price), now=NOW)
    assert not book.add(offer_of(people[3], now=NOW, price=1), now=NOW)
    assert book.refused == 1
    renewed = offer_of(people[0], now=NOW + 5, price=25, ttl_s=300)
    assert book.add(renewed, now=NOW + 5)
    assert [o.price_per_gpu_second for o in book.find("H100", now=NOW + 5)] == [10, 20, 25]
    assert [o.price_per_gpu_second for o in book.find("H100", now=NOW + 5, limit=2)] == [10, 20]
    # the price-10 offer expires at NOW + 110: room for the newcomer
    assert book.add(offer_of(people[3], now=NOW + 110, price=1), now=NOW + 110)
    assert [o.price_per_gpu_second for o in book.find("H100", now=NOW + 110)] == [1, 20, 25]


def test_the_number_of_models_is_bounded() -> None:
    book = OfferBook(OfferBookConfig(models=2))
    a, b, c = ids("book-models", 3)
    assert book.add(offer_of(a, now=NOW, model="A100", ttl_s=60), now=NOW)
    assert book.add(offer_of(b, now=NOW, model="H100"), now=NOW)
    assert not book.add(offer_of(c, now=NOW, model="L4"), now=NOW)
    # once the A100 offer has expired its shelf makes room
    assert book.add(offer_of(c, now=NOW + 60, model="L4"), now=NOW + 60)
    assert book.find("l4", now=NOW + 60) != []  # any case


def test_a_query_for_more_than_an_answer_may_hold_is_refused_when_decoded() -> None:
    wire = encode(OfferBookQuery(gpu_model="H100", limit=MAX_BOOK_ANSWER))
    assert decode(wire) == OfferBookQuery(gpu_model="H100", limit=MAX_BOOK_ANSWER)
    too_many = encode(msgspec.structs.replace(decode(wire), limit=MAX_BOOK_ANSWER + 1))
    with pytest.raises(DecodeError) as caught:
        decode(too_many)
    assert caught.value.field == "limit"


# -- searches over the in-memory network (virtual time) ------------------------------------


async def test_a_new_node_finds_every_offer_past_the_dht_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """60 providers of one model, all up before they advertise, so the DHT nodes of the
    model's key are full after the first 20 (py-libp2p keeps 20 per key). A renter
    that joins afterwards has heard no gossip: it asks its peers' books and sees all 60,
    without a DHT lookup. A renter without books (the DHT alone) sees at most 20."""
    providers = ids("mem-many", 60)
    config = MemoryHubConfig(max_providers_per_key=DHT_CAP)
    async with open_memory_hub(config, rng=random.Random(3)) as hub, AsyncExitStack() as stack:
        nets = [
            await stack.enter_async_context(open_memory_network(hub, identity))
            for identity in providers
        ]
        offers = []
        for index, (identity, net) in enumerate(zip(providers, nets, strict=True)):
            offers.append(offer_of(identity, now=net.now(), price=100 + index))
            await net.advertise(offers[-1])
        await trio.sleep(1)  # gossip delivered
        renter = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-many-renter"))
        )
        rpcs = hub.stats.dht_rpcs
        found = await renter.find_offers("H100", limit=MAX_BOOK_ANSWER)
        assert hub.stats.dht_rpcs == rpcs  # the books answered: no DHT lookup
        alone = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-many-dht"), DHT_ONLY)
        )
        dht_only = await alone.find_offers("H100", limit=MAX_BOOK_ANSWER)
    assert found == offers  # all of them, cheapest first
    assert len(dht_only) <= DHT_CAP


async def test_gossip_fills_the_book_of_a_running_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A node that was up when the offers were gossiped finds them in its own book even
    when no peer answers, and does not walk the DHT for more."""
    async with open_memory_hub(rng=random.Random(4)) as hub, AsyncExitStack() as stack:
        renter = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-gossip-renter"))
        )
        offers = []
        for identity in ids("mem-gossip", 5):
            net = await stack.enter_async_context(open_memory_network(hub, identity, DHT_ONLY))
            offers.append(offer_of(identity, now=net.now()))
            await net.advertise(offers[-1])
        await trio.sleep(1)
        hub.set_faults(loss=1.0)  # no dial, no DHT RPC succeeds from now on
        rpcs = hub.stats.dht_rpcs
        found = await renter.find_offers("H100", timeout=5)
        assert hub.stats.dht_rpcs == rpcs  # its own book knows offers: no DHT walk
    assert sorted(found, key=lambda o: o.provider) == sorted(offers, key=lambda o: o.provider)


async def _answer_with(offers: list[Offer], stream: MessageStream) -> None:
    """A hand-made answer: two offers a page."""
    await stream.receive_as(OfferBookQuery)
    for start in range(0, len(offers), 2):
        await stream.send(OfferBookPage(offers=offers[start : start + 2]))


@pytest.mark.parametrize("flaw", ["forged", "other model", "expired"])
async def test_an_answer_is_cut_at_its_first_bad_offer(
    autojump_clock: trio.testing.MockClock, flaw: str
) -> None:
    """A peer answering with an offer that does not verify, is of another model than asked
    or has expired: what it sent before is kept, nothing after, and the answer does not
    count as complete."""
    a, b, c = ids("mem-bad", 3)
    async with open_memory_hub(rng=random.Random(5)) as hub, AsyncExitStack() as stack:
        asker = await stack.enter_async_context(open_memory_network(hub, a))
        peer: MemoryNetwork = await stack.enter_async_context(open_memory_network(hub, b))
        now = peer.now()
        good = offer_of(b, now=now)
        bad = {
            "forged": forged(offer_of(b, now=now), c),
            "other model": offer_of(c, now=now, model="A100"),
            "expired": offer_of(c, now=now - 400),
        }[flaw]
        after = offer_of(c, now=now)
        peer.serve(OFFER_BOOK_PROTOCOL, lambda s, _p: _answer_with([good, bad, after], s))
        async with asker.open_stream(peer.peer_id, OFFER_BOOK_PROTOCOL) as stream:
            offers, complete = await read_book_answer(
                stream, "H100", limit=10, now=asker.now(), timeout=5
            )
        peer.serve(OFFER_BOOK_PROTOCOL, lambda s, _p: _answer_with([good, after], s))
        async with asker.open_stream(peer.peer_id, OFFER_BOOK_PROTOCOL) as stream:
            clean = await read_book_answer(stream, "H100", limit=10, now=asker.now(), timeout=5)
    assert (offers, complete) == ([good], False)
    assert clean == ([good, after], True)


async def test_an_altered_copy_of_a_held_offer_is_verified_and_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Offers the asker's book already holds are not verified again — but only the very
    same offer: a copy with its signature and another price is verified, and refused."""
    a, b = ids("mem-copy", 2)
    async with open_memory_hub(rng=random.Random(8)) as hub, AsyncExitStack() as stack:
        asker = await stack.enter_async_context(open_memory_network(hub, a))
        peer = await stack.enter_async_context(open_memory_network(hub, b))
        held = offer_of(b, now=peer.now(), price=50)
        book = OfferBook()
        assert book.add(held, now=asker.now())
        cheaper = msgspec.structs.replace(held, price_per_gpu_second=1)
        peer.serve(OFFER_BOOK_PROTOCOL, lambda s, _p: _answer_with([held, cheaper], s))
        async with asker.open_stream(peer.peer_id, OFFER_BOOK_PROTOCOL) as stream:
            answer = await read_book_answer(
                stream, "H100", limit=10, now=asker.now(), timeout=5, book=book
            )
    assert answer == ([held], False)


async def test_a_long_answer_comes_in_pages_that_each_fit_a_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """300 offers with 8 long addresses each (~2.6 KB an offer, ~780 KB in all): the
    answer is split into pages under the 64 KiB frame cap and arrives whole, cheapest
    first; a smaller ``limit`` is honoured."""
    addrs = [f"/dns4/{'x' * 200}{i}.example/tcp/4001" for i in range(8)]
    async with open_memory_hub(rng=random.Random(9)) as hub, AsyncExitStack() as stack:
        asker = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-pages"))
        )
        peer = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-pages-peer"))
        )
        offers = [
            offer_of(identity, now=peer.now(), price=1000 - i, addrs=addrs)
            for i, identity in enumerate(ids("mem-pages", 300))
        ]
        for offer in offers:
            assert peer._book.add(offer, now=peer.now())
        answers = []
        for limit in (MAX_BOOK_ANSWER, 7):
            async with asker.open_stream(peer.peer_id, OFFER_BOOK_PROTOCOL) as stream:
                answers.append(
                    await read_book_answer(stream, "H100", limit=limit, now=asker.now(), timeout=30)
                )
    cheapest_first = offers[::-1]
    assert answers[0] == (cheapest_first, True)
    assert answers[1] == (cheapest_first[:7], True)


async def test_no_peer_answering_falls_back_to_the_dht(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Peers that keep no book (older nodes) do not answer: the DHT is searched."""
    async with open_memory_hub(rng=random.Random(6)) as hub, AsyncExitStack() as stack:
        (provider,) = ids("mem-old", 1)
        net = await stack.enter_async_context(open_memory_network(hub, provider, DHT_ONLY))
        offer = offer_of(provider, now=net.now())
        await net.advertise(offer)
        renter = await stack.enter_async_context(
            open_memory_network(hub, Identity.from_label("mem-old-renter"))
        )
        rpcs = hub.stats.dht_rpcs
        found = await renter.find_offers("H100")
        assert hub.stats.dht_rpcs > rpcs
    assert found == [offer]


# -- real libp2p hosts in one process ------------------------------------------------------


@pytest.mark.slow
async def test_libp2p_a_new_renter_finds_more_providers_than_the_dht_keeps() -> None:
    """A bootstrap peer and 24 providers (more than the 20 provider records py-libp2p keeps
    per key), real libp2p hosts on loopback. A renter started afterwards finds all 24 from
    the bootstrap peer's book (heard by gossip), without searching the DHT."""

    count = 24
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            open_libp2p_network(Identity.from_label("book-boot"))
        )
        joined = Libp2pConfig(bootstrap=tuple(boot.listen_addrs))
        offers = {}
        for identity in ids("book-p2p", count):
            net = await stack.enter_async_context(open_libp2p_network(identity, joined))
            offer = offer_of(identity, now=net.now(), addrs=net.listen_addrs)
            await net.advertise(offer, timeout=10)
            offers[offer.provider] = offer
        seen: dict[bytes, Offer] = {}
        deadline = trio.current_time() + 60  # the last gossip may still be on its way
        for attempt in range(30):
            renter_id = Identity.from_label(f"book-renter-{attempt}")
            async with open_libp2p_network(renter_id, joined) as renter:
                dht_searches = _count_dht_searches(renter)
                seen = {o.provider: o for o in await renter.find_offers("H100", limit=100)}
            if len(seen) == count or trio.current_time() > deadline:
                break
            await trio.sleep(1)
    assert seen == offers
    assert dht_searches == [], "the book answered: no DHT search needed"


def _count_dht_searches(net: Libp2pNetwork) -> list[str]:
    """Record (not replace) the network's DHT searches: the models searched."""
    searches: list[str] = []
    search = net._find_in_dht

    async def counted(model: str, limit: int, timeout: float) -> list[Offer]:  # noqa: ASYNC109
        searches.append(model)
        return await search(model, limit, timeout)

    net._find_in_dht = counted  # type: ignore[method-assign]
    return searches


@pytest.mark.slow
async def test_libp2p_an_offer_advertised_before_any_peer_reaches_a_later_peers_book() -> None:
    """A provider that advertises while no peer is connected yet (its bootstrap peer was
    down, or the gossip mesh had not formed: py-libp2p then publishes to nobody) still
    gets its offer into the book of the peer it connects to afterwards — published again
    once the mesh has a peer, not only at the next re-advertise minutes later (gossipsub's
    own IHAVE recovers a message only for its cache's few heartbeats)."""
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            open_libp2p_network(Identity.from_label("book-early-boot"))
        )
        (identity,) = ids("book-early", 1)
        net = await stack.enter_async_context(open_libp2p_network(identity))
        offer = offer_of(identity, now=net.now(), addrs=net.listen_addrs)
        await net.advertise(offer, timeout=2)
        await trio.sleep(8)  # past gossipsub's message cache (5 heartbeats of 1 s)
        await net.connect(PeerRef(boot.peer_id, tuple(boot.listen_addrs)))
        with trio.move_on_after(60):  # bounded wait: well below the 150 s re-advertise
            while not boot._book.holds(offer):  # noqa: ASYNC110 (library state)
                await trio.sleep(0.2)
        assert boot._book.find("H100", now=boot.now()) == [offer]
