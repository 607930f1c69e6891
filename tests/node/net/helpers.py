"""Offers and byte-level helpers shared by the network tests."""

from __future__ import annotations

import hashlib

import msgspec
import trio
from dgpu.node.net import ByteStream, StreamReset
from dgpu.protocol import Identity, Offer, OfferTerms, make_offer
from dgpu.protocol.messages import JobStatus

JOB = bytes(16)


def terms(model: str = "H100", price: int = 5) -> OfferTerms:
    return OfferTerms(
        gpu_model=model,
        gpu_count=1,
        vram_mb=80_000,
        price_per_gpu_second=price,
        mint=bytes(32),
        region="eu-west",
        max_duration_s=3600,
        simulated=True,
    )


def offer_of(
    identity: Identity,
    *,
    now: int,
    model: str = "H100",
    ttl_s: int = 300,
    price: int = 5,
    addrs: list[str] | None = None,
) -> Offer:
    """A signed offer; its ``offer_id`` is derived from the arguments (deterministic runs)."""
    seed = f"{identity.address}/{now}/{model}/{ttl_s}/{price}".encode()
    offer_id = hashlib.sha256(seed).digest()[:16]
    return make_offer(
        identity,
        terms(model, price),
        multiaddrs=addrs or [],
        now=now,
        ttl_s=ttl_s,
        offer_id=offer_id,
    )


def forged(offer: Offer, impostor: Identity) -> Offer:
    """``offer`` claiming to be from ``impostor``'s key but signed by someone else."""
    return msgspec.structs.replace(offer, provider=impostor.public_key)


def status(detail: str = "", state: str = "running") -> JobStatus:
    return JobStatus(job_id=JOB, state=state, detail=detail)  # type: ignore[arg-type]


async def expect_cut_off(stream: ByteStream, *, within: float = 15.0) -> None:
    """Wait until the remote ends or resets ``stream``; fail if it sends anything."""
    with trio.fail_after(within):
        try:
            data = await stream.receive_some(1024)
        except StreamReset:
            return
    assert data == b"", f"expected the stream to be cut off, got {data!r}"
