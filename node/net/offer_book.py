"""The offer book: every live offer a node has heard of, the newest per provider.

A DHT node keeps the first 20 provider records of a key (LIBP2P.md hazard 14), so a
search of the DHT alone sees at most about 20 providers of a model, and 30 searches at
once each walk the DHT for seconds. Every node already hears every offer as it is gossiped
on :data:`~dgpu.node.net.interface.OFFERS_TOPIC` (providers re-publish theirs well before
they expire): the book keeps them. A search then reads its own book and asks a few peers
it is connected to for theirs (:data:`~dgpu.node.net.interface.OFFER_BOOK_PROTOCOL`: one
:class:`~dgpu.protocol.messages.OfferBookQuery` answered by up to ``limit`` offers,
cheapest first, packed in :class:`~dgpu.protocol.messages.OfferBookPage` frames, then the
end of the stream) — one round trip, however many providers there are. A node that just
started (``dgpu run``) has an empty book and learns it from its bootstrap peers, which
have run for long.

Every offer entering a book has been validated (signature, time window; gossip and DHT
records on arrival, a peer's answer in :func:`read_book_answer`), so a peer can hide offers
from an asker but not forge or alter one; asking several peers, and the DHT when none
knows an offer of the model, bounds what one hostile peer can hide.

Bounded: at most ``per_model`` offers per model and ``models`` models. A full shelf keeps
the providers it holds (their newer offers replace their older ones) and refuses newcomers
until an offer expires, as a DHT node keeps its first 20 provider records: a flood of fresh
keys at price 1 can fill the free room but cannot push out providers already known —
evicting the dearest would let it. Expired offers are dropped as they are met.
"""

# Explicit per-call timeouts, as in the Network interface.
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import trio
from dgpu.node.net.errors import StreamClosed
from dgpu.node.net.interface import MessageStream
from dgpu.protocol.codec import encode
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.messages import (
    MAX_BOOK_ANSWER,
    MAX_MESSAGE_BYTES,
    Offer,
    OfferBookPage,
    OfferBookQuery,
)
from dgpu.protocol.offers import check_window, validate_offer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfferBookConfig:
    enabled: bool = True
    """Keep a book, serve it and ask peers for theirs; off: searches use the DHT alone."""
    per_model: int = 2048
    models: int = 256
    peers_asked: int = 3
    """Peers asked for their book on each search (bootstrap peers first)."""
    ask_timeout_s: float = 3.0
    """How long an asked peer has to finish its answer."""


def _model_key(model: str) -> str:
    return model.casefold()


def _newer(a: Offer, b: Offer) -> bool:
    return (a.created_at, a.expires_at, a.sig) > (b.created_at, b.expires_at, b.sig)


def _cheapest_first(offer: Offer) -> tuple[int, int, bytes]:
    return (offer.price_per_gpu_second, -offer.created_at, offer.provider)


class OfferBook:
    """Validated offers by model and provider (see the module docstring). Pure: the caller
    says what time it is and has validated what it adds."""

    def __init__(self, config: OfferBookConfig | None = None) -> None:
        self.config = config or OfferBookConfig()
        self._by_model: dict[str, dict[bytes, Offer]] = {}
        self._model_of: dict[bytes, str] = {}
        self.refused = 0
        """Offers not kept because the book was full."""

    def __len__(self) -> int:
        return len(self._model_of)

    def add(self, offer: Offer, *, now: int) -> bool:
        """Keep ``offer`` (already validated) unless it has expired, a newer offer of its
        provider is kept, or it is a newcomer to a full shelf. True when kept."""
        if offer.expires_at <= now:
            return False
        key = _model_key(offer.gpu_model)
        held_model = self._model_of.get(offer.provider)
        if held_model is not None:
            held = self._by_model[held_model][offer.provider]
            if not _newer(offer, held):
                return False
            self._remove(offer.provider)
        shelf = self._by_model.get(key)
        if shelf is None:
            if len(self._by_model) >= self.config.models and not self._drop_expired_everywhere(now):
                self.refused += 1
                return False
            shelf = self._by_model[key] = {}
        if held_model != key and len(shelf) >= self.config.per_model:
            self._drop_expired(shelf, now)
            if len(shelf) >= self.config.per_model:
                self.refused += 1
                return False
        shelf[offer.provider] = offer
        self._model_of[offer.provider] = key
        return True

    def holds(self, offer: Offer) -> bool:
        """Whether this very offer (every field, the signature included) is kept: it was
        validated when it came in, so only its time window needs checking again."""
        key = self._model_of.get(offer.provider)
        return key is not None and self._by_model[key][offer.provider] == offer

    def find(self, model: str, *, now: int, limit: int | None = None) -> list[Offer]:
        """The live offers of ``model`` (any case), cheapest first, at most ``limit``."""
        shelf = self._by_model.get(_model_key(model))
        if not shelf:
            return []
        self._drop_expired(shelf, now)
        ordered = sorted(shelf.values(), key=_cheapest_first)
        return ordered if limit is None else ordered[:limit]

    def _remove(self, provider: bytes) -> None:
        key = self._model_of.pop(provider)
        shelf = self._by_model[key]
        del shelf[provider]
        if not shelf:
            del self._by_model[key]

    def _drop_expired(self, shelf: dict[bytes, Offer], now: int) -> None:
        for provider in [p for p, o in shelf.items() if o.expires_at <= now]:
            self._remove(provider)

    def _drop_expired_everywhere(self, now: int) -> bool:
        """Drop every expired offer (emptied shelves go); whether a model fits now."""
        for shelf in list(self._by_model.values()):
            self._drop_expired(shelf, now)
        return len(self._by_model) < self.config.models


PAGE_BYTES: Final = MAX_MESSAGE_BYTES - 1024
"""Offer bytes packed into one :class:`OfferBookPage` (room left for its own fields)."""


async def serve_book(book: OfferBook, stream: MessageStream, *, now: int) -> None:
    """Answer one :class:`OfferBookQuery` on ``stream`` (the handler's part; the caller
    closes the stream, which ends the answer)."""
    query = await stream.receive_as(OfferBookQuery)
    page: list[Offer] = []
    size = 0
    for offer in book.find(query.gpu_model, now=now, limit=min(query.limit, MAX_BOOK_ANSWER)):
        length = len(encode(offer))
        if page and size + length > PAGE_BYTES:
            await stream.send(OfferBookPage(offers=page))
            page, size = [], 0
        page.append(offer)
        size += length
    if page:
        await stream.send(OfferBookPage(offers=page))


async def read_book_answer(
    stream: MessageStream,
    model: str,
    *,
    limit: int,
    now: int,
    timeout: float,
    book: OfferBook | None = None,
    into: list[Offer] | None = None,
) -> tuple[list[Offer], bool]:
    """Ask the peer on ``stream`` for its offers of ``model`` and read the answer: each
    offer validated now and of the model asked; an offer that is not ends the answer (the
    peer misbehaves: what it sent before is kept). An offer ``book`` already holds, field
    for field, is not verified again (several peers send the same offers). Returns what
    arrived by ``timeout`` (collected in ``into`` as it arrives, when given: a caller
    cancelled midway keeps what came) and whether the peer answered in full (it closed the
    stream, or sent ``limit`` offers)."""
    wanted = _model_key(model)
    found: list[Offer] = [] if into is None else into
    complete = False
    with trio.move_on_after(timeout):
        await stream.send(OfferBookQuery(gpu_model=model, limit=min(limit, MAX_BOOK_ANSWER)))
        while len(found) < limit:
            try:
                page = await stream.receive_as(OfferBookPage, timeout=timeout)
            except StreamClosed:
                complete = True
                break
            for offer in page.offers[: limit - len(found)]:
                if not _acceptable(offer, wanted, now, book, stream.remote_peer):
                    return found, False
                found.append(offer)
        else:
            complete = True
    return found, complete


def _acceptable(offer: Offer, wanted: str, now: int, book: OfferBook | None, peer: str) -> bool:
    try:
        if book is not None and book.holds(offer):
            check_window(offer, now=now)
        else:
            validate_offer(offer, now=now)
    except ProtocolError as exc:
        log.info("peer %s sent an invalid offer in its book: %s", peer, exc)
        return False
    if _model_key(offer.gpu_model) != wanted:
        log.info("peer %s answered for %s with a %s", peer, wanted, offer.gpu_model)
        return False
    return True
