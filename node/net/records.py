"""DHT keys and record rules for offers, shared by every implementation (pure).

* provider record key: ``/dgpu/gpu/<model>`` (namespaced: py-libp2p would hex-decode a
  bare model name such as ``a100``);
* value key: ``/dgpu/offer/<peer id>``, value = the canonical bytes of the signed offer.

A value is valid when it decodes as an :class:`~dgpu.protocol.messages.Offer` within the
offer size cap, its signature verifies, it is inside its time window and it is signed by
the peer named in the key. Among valid values the newest (``created_at``, then
``expires_at``) wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from dgpu.protocol.errors import MessageTooLarge, OfferError, ProtocolError
from dgpu.protocol.identity import Identity, peer_id_of
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import MAX_OFFER_BYTES, parse_offer, validate_offer

NAMESPACE: Final = "dgpu"
PROVIDER_PREFIX: Final = "/dgpu/gpu/"
OFFER_PREFIX: Final = "/dgpu/offer/"

__all__ = [
    "MAX_OFFER_BYTES",
    "NAMESPACE",
    "OFFER_PREFIX",
    "PROVIDER_PREFIX",
    "check_offer_record",
    "check_own_offer",
    "newest_per_provider",
    "offer_key",
    "provider_key",
    "select_newest",
]


def provider_key(model: str) -> str:
    return f"{PROVIDER_PREFIX}{model}"


def offer_key(peer_id: str) -> str:
    return f"{OFFER_PREFIX}{peer_id}"


def check_offer_record(key: str, value: bytes, *, now: int) -> Offer:
    """The offer in a DHT value under ``key``; raises ``DecodeError``/``OfferError``/
    ``SignatureError`` when the record must be refused."""
    if not key.startswith(OFFER_PREFIX):
        raise OfferError(f"no values are stored under {key!r}")
    if len(value) > MAX_OFFER_BYTES:
        raise MessageTooLarge(len(value), MAX_OFFER_BYTES)
    offer = parse_offer(value, now=now)
    signer = peer_id_of(offer.provider)
    if key[len(OFFER_PREFIX) :] != signer:
        raise OfferError(f"offer under {key!r} is signed by {signer}")
    return offer


def check_own_offer(offer: Offer, identity: Identity, *, now: int) -> Offer:
    """Refuse to advertise an offer that is not ours or not valid now."""
    if offer.provider != identity.public_key:
        raise OfferError(f"offer of {peer_id_of(offer.provider)} advertised by {identity.peer_id}")
    return validate_offer(offer, now=now)


def _rank(offer: Offer) -> tuple[int, int, bytes]:
    return (offer.created_at, offer.expires_at, offer.sig)


def select_newest(key: str, values: list[bytes], *, now: int) -> int:
    """Index of the best value: the newest valid offer (0 when none is valid)."""
    best, best_rank = 0, None
    for index, value in enumerate(values):
        try:
            rank = _rank(check_offer_record(key, value, now=now))
        except ProtocolError:  # undecodable, forged or expired: it just loses
            continue
        if best_rank is None or rank > best_rank:
            best, best_rank = index, rank
    return best


def newest_per_provider(offers: Iterable[Offer]) -> list[Offer]:
    """One offer per provider (the newest), in first-seen order of providers."""
    chosen: dict[bytes, Offer] = {}
    for offer in offers:
        current = chosen.get(offer.provider)
        if current is None or _rank(offer) > _rank(current):
            chosen[offer.provider] = offer
    return list(chosen.values())
