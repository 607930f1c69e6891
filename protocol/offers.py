"""Offers: build, sign and validate (signature, time window, signer) whatever their source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from dgpu.protocol.codec import decode_as, encode
from dgpu.protocol.errors import OfferError, OfferExpired, OfferNotYetValid
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import ExecutorKind, GpuVendor, Offer
from dgpu.protocol.signing import sign, verify

# Room for 8 multiaddrs of 256 bytes and 64 board UUIDs of 64 characters beside the rest.
MAX_OFFER_BYTES: Final = 8192
MAX_CLOCK_SKEW_S: Final = 30
MAX_OFFER_TTL_S: Final = 3600


@dataclass(frozen=True)
class OfferTerms:
    """What a provider puts in an offer (the rest is identity and time)."""

    gpu_model: str
    gpu_count: int
    vram_mb: int
    price_per_gpu_second: int
    mint: bytes
    region: str
    max_duration_s: int
    simulated: bool
    power_w: int = 0
    gpu_vendor: GpuVendor = "unknown"
    gpu_name: str = ""
    driver_version: str = ""
    gpu_uuids: tuple[str, ...] = ()
    executor: ExecutorKind = "docker"
    max_input_bytes: int = 0
    ports: bool = False


def make_offer(
    provider: Identity,
    terms: OfferTerms,
    *,
    multiaddrs: list[str],
    now: int,
    ttl_s: int,
    offer_id: bytes | None = None,
) -> Offer:
    offer = Offer(
        provider=provider.public_key,
        offer_id=offer_id if offer_id is not None else os.urandom(16),
        gpu_model=terms.gpu_model,
        gpu_count=terms.gpu_count,
        vram_mb=terms.vram_mb,
        power_w=terms.power_w,
        simulated=terms.simulated,
        gpu_vendor=terms.gpu_vendor,
        gpu_name=terms.gpu_name,
        driver_version=terms.driver_version,
        gpu_uuids=list(terms.gpu_uuids),
        executor=terms.executor,
        price_per_gpu_second=terms.price_per_gpu_second,
        mint=terms.mint,
        region=terms.region,
        max_duration_s=terms.max_duration_s,
        multiaddrs=multiaddrs,
        created_at=now,
        expires_at=now + ttl_s,
        max_input_bytes=terms.max_input_bytes,
        ports=terms.ports,
    )
    return sign(offer, provider)


def validate_offer(offer: Offer, *, now: int, skew_s: int = MAX_CLOCK_SKEW_S) -> Offer:
    """Check an offer's signature and time window; return it unchanged when valid."""
    verify(offer, offer.provider)
    return check_window(offer, now=now, skew_s=skew_s)


def check_window(offer: Offer, *, now: int, skew_s: int = MAX_CLOCK_SKEW_S) -> Offer:
    """Check an offer's time window only (its signature was verified before); return it
    unchanged when valid."""
    if offer.created_at > now + skew_s:
        raise OfferNotYetValid(offer.created_at, now)
    if offer.expires_at <= now:
        raise OfferExpired(offer.expires_at, now)
    if offer.expires_at - offer.created_at > MAX_OFFER_TTL_S:
        lifetime = offer.expires_at - offer.created_at
        raise OfferError(f"offer lifetime {lifetime}s exceeds {MAX_OFFER_TTL_S}s")
    return offer


def parse_offer(data: bytes, *, now: int) -> Offer:
    """Decode and validate offer bytes from any source (DHT, gossip, HTTP)."""
    return validate_offer(decode_as(Offer, data, limit=MAX_OFFER_BYTES), now=now)


def offer_bytes(offer: Offer) -> bytes:
    return encode(offer)
