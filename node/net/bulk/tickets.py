"""Bulk tickets: the renter's signed permission to move one object of one job.

A ticket names the job, the renter (signer), the server (the provider that serves or
receives the bytes), the operation, the object (sha256 and size) and an expiry. The
server accepts it only when the signature verifies under the renter's key, it is the
named server, the ticket is unexpired and its own grant for that job (from the
negotiation: the renter's key and the agreed byte limit) allows it. The signature is
domain-separated (``dgpu/v1/bulk_ticket``) like every other dgpu signature.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from dgpu.node.net.errors import TicketRefused
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import Identity, verify
from msgspec import Meta

TICKET_KIND: Final = "bulk_ticket"
MAX_TICKET_TTL_S: Final = 24 * 3600

U64 = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Key32 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Op = Literal["get", "put"]


class BulkTicket(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    job_id: Annotated[bytes, Meta(min_length=16, max_length=16)]
    renter: Key32
    server: Key32
    op: Op
    sha256: Key32
    size: U64
    expires_at: U64
    sig: Annotated[bytes, Meta(max_length=64)] = b""

    def payload(self) -> bytes:
        return msgspec.msgpack.encode(msgspec.structs.replace(self, sig=b""))


def make_ticket(
    renter: Identity,
    *,
    job_id: bytes,
    server: bytes,
    op: Op,
    sha256: bytes,
    size: int,
    expires_at: int,
) -> BulkTicket:
    """A ticket signed by ``renter`` (the renter asks, the provider's server checks)."""
    ticket = BulkTicket(
        job_id=job_id,
        renter=renter.public_key,
        server=server,
        op=op,
        sha256=sha256,
        size=size,
        expires_at=expires_at,
    )
    return msgspec.structs.replace(ticket, sig=renter.sign(TICKET_KIND, ticket.payload()))


def check_ticket(ticket: BulkTicket, *, server: bytes, now: int) -> BulkTicket:
    """Signature, server and time window; the grant is checked by the server's policy."""
    if ticket.server != server:
        raise TicketRefused("ticket is for another server")
    if ticket.expires_at <= now:
        raise TicketRefused(f"ticket expired at {ticket.expires_at} (now {now})")
    if ticket.expires_at > now + MAX_TICKET_TTL_S:
        raise TicketRefused("ticket lifetime too long")
    try:
        verify(ticket.renter, TICKET_KIND, ticket.payload(), ticket.sig)
    except SignatureError as exc:
        raise TicketRefused(f"bad ticket signature: {exc}") from exc
    return ticket
