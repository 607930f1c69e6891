"""Finding offers: the coordinator's index when there is one, the DHT otherwise.

Whatever the source, every offer is re-validated here (signature, time window), then
filtered by what the renter asked (model, GPU count, VRAM, region, price, duration, mint,
vendor, how jobs run) and ranked: first by the renter's own standing of the provider
(proven, then unknown — a new key however cheap —, then those backing off after failing it;
see :mod:`dgpu.node.renter.peers`), then providers the index has seen complete jobs before
those it has not (a flood of new keys at price 1 cannot push them down), then cheapest
first, then the provider's score, then more VRAM, then the provider key (so the order is
deterministic). When nothing matches, the
counts of offers each filter excluded say why.

Without a coordinator (``--p2p``, or when it is down) offers come from the peer-to-peer
network: the node's offer book and those of a few peers, the DHT when they know none (see
:mod:`dgpu.node.net.offer_book`). Up to :data:`SEEN_AT_MOST` offers of the model are seen,
cheapest first, and all of them ranked, so the cheapest are kept whatever order they came
in; :attr:`FoundOffers.seen` says how many were seen.

The renter first asks the providers it has proven (its own history) for their offer
directly: a peer can leave an offer out of its book's answer and a DHT node keeps only the
first 20 provider records of a key (LIBP2P.md hazard 14), so fakes can hide a real
provider from a search, but not from a renter that remembers it. When one of them offers a
match, the search only looks for fallbacks, with a short deadline.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import httpx
import trio
from dgpu.node.gpu.models import normalize_model_name
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import OFFER_PROTOCOL, Network, PeerRef
from dgpu.node.renter.errors import NoMatchingOffer
from dgpu.protocol.errors import DgpuError, ProtocolError
from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import validate_offer

if TYPE_CHECKING:
    from dgpu.node.coordinator_client import CoordinatorClient

log = logging.getLogger(__name__)

PROVEN_ASKED = 8
"""Proven providers asked directly for their offer on a peer-to-peer search."""
DIRECT_ASK_TIMEOUT_S = 3.0
"""How long a proven provider has to answer for its offer (asked before the peer-to-peer
search: one round trip when it answers, this much more when none of them does)."""
FALLBACK_SEARCH_S = 5.0
"""The peer-to-peer search's deadline when a proven provider already offered a match: it
only looks for fallbacks then (a DHT lookup among fakes can take its full 20 s)."""

SEEN_AT_MOST = 512
"""Offers of the model a peer-to-peer search asks for (the cheapest; all when fewer)."""
P2P_SOURCE = "peer-to-peer network"

StandingOf = Callable[[bytes], int]
"""A provider key's standing with this renter: lower ranks first (see ``peers``)."""


def _no_history(provider: bytes) -> int:
    return 0


@dataclass(frozen=True)
class OfferQuery:
    """What the renter needs. Prices are base units per GPU-second."""

    gpu_model: str
    count: int = 1
    min_vram_mb: int = 0
    region: str | None = None
    max_price_per_gpu_second: int | None = None
    duration_s: int = 1
    mint: bytes | None = None
    limit: int = 32
    """Candidates kept after ranking (more than the DHT's 20 providers per key, so one
    flood of fakes cannot crowd the real offers out of what is tried)."""
    vendor: str | None = None
    """Only offers whose backend read this vendor ("nvidia", "amd", "apple")."""
    executor: str | None = None
    """Only offers whose jobs run this way ("docker" containers, "local" processes)."""
    verified: bool = False
    """Only offers of providers with a recent ``verified`` probe verdict. The coordinator
    keeps the verdicts: such a search asks its index only, never the DHT."""

    @property
    def model(self) -> str:
        return normalize_model_name(self.gpu_model)


@dataclass(frozen=True)
class Candidate:
    offer: Offer
    score: float = 0.0
    source: str = "p2p"
    vouched: bool = False
    """The index has seen this provider complete jobs (``provider_proven``)."""


@dataclass(frozen=True)
class FoundOffers:
    candidates: list[Candidate]
    """The matching offers kept after ranking (at most the query's ``limit``)."""
    source: str
    seen: int
    """Offers the search saw (before filtering and ranking)."""
    excluded: dict[str, int] = field(default_factory=dict)
    matched: int = 0
    """Providers whose offer matched (before the ranking kept ``limit`` of them)."""

    @property
    def offers(self) -> list[Offer]:
        return [c.offer for c in self.candidates]

    def to_json(self) -> dict[str, object]:
        """How the search went, for ``--json``: where from, offers seen, how many matched,
        how many were kept after ranking, how many each filter excluded."""
        return {
            "source": self.source,
            "seen": self.seen,
            "matched": self.matched,
            "kept": len(self.candidates),
            "excluded": dict(sorted(self.excluded.items())),
        }

    def why_none(self) -> str:
        if not self.seen:
            return f"no offer found through the {self.source}"
        parts = ", ".join(f"{count} by {name}" for name, count in sorted(self.excluded.items()))
        return f"{self.seen} offers found through the {self.source}, none matches ({parts})"


class OfferIndex(Protocol):
    """A searchable index of offers (the coordinator)."""

    async def search(self, query: OfferQuery) -> list[Candidate]: ...


class CoordinatorIndex:
    """:class:`OfferIndex` over the coordinator's HTTP API."""

    def __init__(self, client: CoordinatorClient) -> None:
        self.client = client

    async def search(self, query: OfferQuery) -> list[Candidate]:
        page = await self.client.search_offers(
            gpu_model=query.model,
            count=query.count,
            min_vram_mb=query.min_vram_mb or None,
            max_price=query.max_price_per_gpu_second,
            region=query.region,
            verified=query.verified,
            limit=min(max(query.limit * 2, 10), 100),
        )
        return [
            Candidate(o.offer, o.provider_score, "coordinator", o.provider_proven)
            for o in page.offers
        ]


def _same_model(a: str, b: str) -> bool:
    return normalize_model_name(a).casefold() == normalize_model_name(b).casefold()


def exclusion(offer: Offer, query: OfferQuery, *, now: int) -> str | None:
    """The first filter ``offer`` fails for ``query`` (None when it matches)."""
    try:
        validate_offer(offer, now=now)
    except ProtocolError:
        return "validity"
    checks = (
        ("model", _same_model(offer.gpu_model, query.model)),
        ("gpu count", offer.gpu_count >= query.count),
        ("vram", offer.vram_mb >= query.min_vram_mb),
        ("region", query.region is None or offer.region == query.region),
        (
            "price",
            query.max_price_per_gpu_second is None
            or offer.price_per_gpu_second <= query.max_price_per_gpu_second,
        ),
        ("duration", offer.max_duration_s >= query.duration_s),
        ("mint", query.mint is None or offer.mint == query.mint),
        ("vendor", query.vendor is None or offer.gpu_vendor == query.vendor),
        ("executor", query.executor is None or offer.executor == query.executor),
    )
    for name, ok in checks:
        if not ok:
            return name
    return None


def rank(
    candidates: list[Candidate],
    query: OfferQuery,
    *,
    now: int,
    source: str,
    standing: StandingOf = _no_history,
) -> FoundOffers:
    """Filter and order; one candidate per provider (the cheapest, then newest)."""
    excluded: Counter[str] = Counter()
    best: dict[bytes, Candidate] = {}
    for candidate in candidates:
        reason = exclusion(candidate.offer, query, now=now)
        if reason is not None:
            excluded[reason] += 1
            continue
        key = candidate.offer.provider
        held = best.get(key)
        if held is None or (
            candidate.offer.price_per_gpu_second,
            -candidate.offer.created_at,
        ) < (held.offer.price_per_gpu_second, -held.offer.created_at):
            best[key] = candidate
    ordered = sorted(
        best.values(),
        key=lambda c: (
            standing(c.offer.provider),
            not c.vouched,
            c.offer.price_per_gpu_second,
            -c.score,
            -c.offer.vram_mb,
            c.offer.provider,
        ),
    )
    return FoundOffers(
        ordered[: query.limit], source, len(candidates), dict(excluded), matched=len(ordered)
    )


async def ask_providers(
    network: Network, providers: Sequence[bytes], *, timeout_s: float = DIRECT_ASK_TIMEOUT_S
) -> list[Offer]:
    """Each of ``providers``' current offer, asked of the provider itself (all at once);
    those that do not answer in time, or answer with someone else's offer, give none."""
    found: list[Offer] = []

    async def ask(provider: bytes) -> None:
        peer = PeerRef(peer_id_of(provider))
        with trio.move_on_after(timeout_s):
            try:
                async with network.open_stream(peer, OFFER_PROTOCOL, timeout=timeout_s) as stream:
                    answer = await stream.receive(timeout=timeout_s)
            except (NetError, ProtocolError) as exc:
                log.info("provider %s did not give its offer: %s", peer.peer_id, exc)
                return
            if isinstance(answer, Offer) and answer.provider == provider:
                found.append(answer)

    async with trio.open_nursery() as nursery:
        for provider in providers:
            nursery.start_soon(ask, provider)
    return found


async def find_offers(
    query: OfferQuery,
    *,
    network: Network,
    index: OfferIndex | None = None,
    p2p: bool = False,
    timeout_s: float = 20.0,
    standing: StandingOf = _no_history,
    proven: Sequence[bytes] = (),
) -> FoundOffers:
    """Ask the index (unless ``p2p`` or there is none), falling back to the peer-to-peer
    network when the index fails or has nothing that matches — except for a ``verified``
    query, which only the index can answer (peers know no verdicts). Peer to peer, the
    ``proven`` providers are asked directly first."""
    now = network.now()
    if query.verified:
        if index is None or p2p:
            raise NoMatchingOffer("only a coordinator knows which providers are verified")
        return rank(
            await index.search(query), query, now=now, source="coordinator", standing=standing
        )
    if index is not None and not p2p:
        try:
            found = rank(
                await index.search(query), query, now=now, source="coordinator", standing=standing
            )
        except (DgpuError, httpx.HTTPError) as exc:
            log.warning(
                "the coordinator's index failed (%s); searching the peer-to-peer network", exc
            )
        else:
            if found.candidates:
                return found
            log.info("the coordinator's index has no match; searching the peer-to-peer network")
    # Proven providers first (one round trip each, all at once): when one of them offers
    # what is asked, it ranks first whatever the search returns, so the search only has to
    # find fallbacks and gets a short deadline (it returns what it found by then).
    direct = await ask_providers(network, proven) if proven else []
    now = network.now()
    if any(exclusion(offer, query, now=now) is None for offer in direct):
        timeout_s = min(timeout_s, FALLBACK_SEARCH_S)
    try:
        offers = await network.find_offers(
            query.model, limit=max(query.limit * 2, SEEN_AT_MOST), timeout=timeout_s
        )
    except NetError as exc:
        log.warning("the peer-to-peer search failed: %s", exc)
        offers = []
    candidates = [Candidate(o, source="direct") for o in direct] + [
        Candidate(o, source="p2p") for o in offers
    ]
    return rank(candidates, query, now=network.now(), source=P2P_SOURCE, standing=standing)
