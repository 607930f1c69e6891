"""Attack 6 of issue 12, renter side, in virtual time: fake offers cannot capture a renter.

Twenty validly signed offers from fresh keys, cheaper than the one honest provider, whose
providers accept the negotiation stream and never answer. The renter must end up on the
honest provider — through the coordinator's index and through the DHT alike — having
spent on the fakes no more than the concurrency and the short timeout allow, and on the
next run nothing at all (it remembers them). Times are MockClock times: exact.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.net import NEGOTIATE_PROTOCOL, MessageStream, open_memory_network
from dgpu.node.renter import (
    Agreed,
    Candidate,
    OfferQuery,
    PeerMemory,
    RenterEvent,
    Standing,
    rank,
)
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import OfferTerms, make_offer

from tests.node.rolekit import MINT, MemoryMarket, job_spec, memory_market

FAKES = 20


class ListIndex:
    """A coordinator index that returns what it was given (fakes ranked first: score 0.7,
    the score a brand-new key got in the issue)."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = list(candidates)

    async def search(self, query: OfferQuery) -> list[Candidate]:
        return self.candidates


async def silent(stream: MessageStream, peer: str) -> None:
    await trio.sleep_forever()  # takes the job request, never answers


@asynccontextmanager
async def fake_providers(m: MemoryMarket, count: int) -> AsyncIterator[list[Offer]]:
    """``count`` fresh keys on the network, each advertising a cheap, valid offer."""
    offers: list[Offer] = []
    async with AsyncExitStack() as stack:
        for index in range(count):
            identity = Identity.from_label(f"fake-{index}")
            net = await stack.enter_async_context(open_memory_network(m.hub, identity))
            net.serve(NEGOTIATE_PROTOCOL, silent)
            terms = OfferTerms(
                gpu_model="RTX 4090",
                gpu_count=8,
                vram_mb=81_920,
                price_per_gpu_second=1,
                mint=MINT,
                region="eu",
                max_duration_s=86_400,
                simulated=False,  # whatever it likes to claim
            )
            offer = make_offer(
                identity, terms, multiaddrs=net.listen_addrs, now=m.hub.now(), ttl_s=300
            )
            await net.advertise(offer)
            offers.append(offer)
        yield offers


async def honest_offer(m: MemoryMarket) -> Offer:
    """The honest provider's offer once re-advertised among the fakes (it advertised first
    when the network held two peers: the DHT has it where a lookup finds it only after its
    next refresh, half its 120 s life later)."""
    first = m.provider.offer
    await trio.sleep(65)
    assert m.provider.offer is not None and m.provider.offer is not first
    return m.provider.offer


@pytest.mark.parametrize("path", ["coordinator", "p2p"])
async def test_twenty_silent_fakes_cost_the_renter_a_bounded_time_then_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, path: str
) -> None:
    async with memory_market(tmp_path) as m, fake_providers(m, FAKES) as fakes:
        honest = await honest_offer(m)
        if path == "coordinator":
            listed = [Candidate(f, 0.7, "coordinator") for f in fakes]
            m.renter.index = ListIndex([*listed, Candidate(honest, 0.5, "coordinator")])
        config = m.renter.config
        # the fakes rank first: cheaper, and unknown like the honest provider
        query = m.renter.query_for(job_spec("true"))
        found = await m.renter.find_offers(query, p2p=path == "p2p")
        assert found.offers[-1] == honest
        ahead = len(found.offers) - 1  # the DHT returns what its lookup reaches
        assert ahead == FAKES if path == "coordinator" else ahead >= FAKES // 2

        async def run_once() -> tuple[float, float]:
            """(virtual seconds until the agreement, until the end of the job)."""
            agreed_at: list[float] = []

            def on_event(event: RenterEvent) -> None:
                if isinstance(event, Agreed):
                    agreed_at.append(trio.current_time())

            start = trio.current_time()
            result = await m.renter.run_job(job_spec("sleep 3"), p2p=path == "p2p", events=on_event)
            assert result.state == "succeeded"
            assert result.provider == m.provider_id.public_key
            (agreed,) = agreed_at
            return agreed - start, trio.current_time() - start

        to_agree, to_end = await run_once()
        # K attempts at a time, each given up after the short timeout T, a new one every
        # S at most: the honest offer (rank F + 1) is asked within max(S, T/K) * F + T.
        k, t, s = config.concurrent_attempts, config.attempt_timeout_s, config.attempt_stagger_s
        bound = max(s, t / k) * ahead + t
        assert to_agree <= bound, (to_agree, bound)
        assert to_agree >= math.floor(ahead / k) * t  # each fake really got its timeout
        # (the 94 s of the issue: three fakes, 30 s each, then failure)
        assert bound < 20

        # Every fake asked to its timeout is remembered as failed (those still in flight
        # when the honest one agreed were only dropped); the honest one is proven.
        standings = [m.renter.peers.standing(f.provider) for f in fakes]
        assert standings.count(Standing.BACKING_OFF) >= ahead - k
        assert Standing.PROVEN not in standings
        assert m.renter.peers.standing(honest.provider) is Standing.PROVEN
        found = await m.renter.find_offers(query, p2p=path == "p2p")
        assert found.offers[0].provider == honest.provider

        again, _ = await run_once()
        assert again < 1.0, again  # straight to the honest provider: no fake asked
        assert to_end - to_agree >= 3


async def test_a_new_key_does_not_rank_above_a_proven_provider(tmp_path: Path) -> None:
    now = 1_800_000_000
    clock = [now]
    with NodeStore.open(tmp_path / "renter.sqlite") as store:
        memory = PeerMemory(store, now=lambda: clock[0])
        proven, new, failing = (Identity.from_label(n).public_key for n in ("p", "n", "f"))
        memory.succeeded(proven)
        memory.failed(failing, "silent")
        assert memory.standing(proven) is Standing.PROVEN
        assert memory.standing(new) is Standing.UNKNOWN  # no history is not a good history
        assert memory.standing(failing) is Standing.BACKING_OFF
        # backoff doubles with each failure, and runs out
        first = memory.record(failing).retry_after - now
        memory.failed(failing, "silent again")
        assert memory.record(failing).retry_after - now == 2 * first
        clock[0] += 2 * first
        assert memory.standing(failing) is Standing.UNKNOWN
        # a failure since the last success: backing off even for a proven one
        memory.failed(proven, "vanished")
        assert memory.standing(proven) is Standing.BACKING_OFF
        memory.succeeded(proven)
        assert memory.standing(proven) is Standing.PROVEN
        # persisted: a restarted renter remembers
        again = PeerMemory(store, now=lambda: clock[0])
        assert again.standing(proven) is Standing.PROVEN
        assert again.record(failing).failures == 2


async def test_ranking_puts_proven_before_cheaper_new_keys(tmp_path: Path) -> None:
    from tests.node.test_renter_discovery import NOW, QUERY, offer

    cheap_new = offer("new", price=1)
    dear_proven = offer("proven", price=150)
    standings = {dear_proven.provider: Standing.PROVEN}

    def standing(provider: bytes) -> int:
        return standings.get(provider, Standing.UNKNOWN)

    candidates = [Candidate(cheap_new, 0.7), Candidate(dear_proven, 0.5)]
    found = rank(candidates, QUERY, now=NOW, source="test", standing=standing)
    assert found.offers == [dear_proven, cheap_new]
    # with no history at all, price decides as before
    found = rank(candidates, QUERY, now=NOW, source="test")
    assert found.offers == [cheap_new, dear_proven]
