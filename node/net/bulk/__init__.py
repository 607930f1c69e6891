"""A separate, authorised channel for bulk bytes (job inputs and outputs).

Files of many MB move one object per stream, content-addressed by sha256 and verified on
receipt, over a libp2p stream of :data:`BULK_PROTOCOL` (encrypted and authenticated by
Noise, over whatever connection exists: direct, hole-punched or relayed) or, where an
operator asks for it, over plain TCP (unencrypted: trusted LANs and benchmarks only):

* the provider runs :func:`serve_bulk_on` (libp2p) or :func:`serve_bulk` (TCP) over a
  :class:`ContentStore` and puts what it returns in ``Quote.bulk_addr``; when the job
  is agreed it records a :class:`BulkGrant` (renter key, byte limit from the
  negotiation, which objects) in its :class:`BulkGrants`;
* the renter signs a :class:`BulkTicket` per object (:func:`make_ticket`) and calls
  :func:`fetch` (outputs) or :func:`push` (inputs); both resume from a byte offset.
"""

from dgpu.node.net.bulk.client import fetch, push
from dgpu.node.net.bulk.server import (
    BULK_PROTOCOL,
    BulkServerConfig,
    RawServing,
    bulk_addr,
    over_libp2p,
    parse_bulk_addr,
    serve_bulk,
    serve_bulk_on,
)
from dgpu.node.net.bulk.store import BulkGrant, BulkGrants, ContentStore, sha256_file
from dgpu.node.net.bulk.tickets import BulkTicket, check_ticket, make_ticket

__all__ = [
    "BULK_PROTOCOL",
    "BulkGrant",
    "BulkGrants",
    "BulkServerConfig",
    "BulkTicket",
    "ContentStore",
    "RawServing",
    "bulk_addr",
    "check_ticket",
    "fetch",
    "make_ticket",
    "over_libp2p",
    "parse_bulk_addr",
    "push",
    "serve_bulk",
    "serve_bulk_on",
    "sha256_file",
]
