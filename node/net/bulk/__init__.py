"""A separate, authorised channel for bulk bytes (job inputs and outputs).

libp2p streams carry control messages; files of many MB go over plain TCP, one object per
connection, content-addressed by sha256 and verified on receipt:

* the provider runs :func:`serve_bulk` over a :class:`ContentStore` and puts its address
  in ``Quote.bulk_addr``; when the job is agreed it records a :class:`BulkGrant` (renter
  key, byte limit from the negotiation, which objects) in its :class:`BulkGrants`;
* the renter signs a :class:`BulkTicket` per object (:func:`make_ticket`) and calls
  :func:`fetch` (outputs) or :func:`push` (inputs); both resume from a byte offset.
"""

from dgpu.node.net.bulk.client import fetch, push
from dgpu.node.net.bulk.server import (
    BulkServerConfig,
    bulk_addr,
    parse_bulk_addr,
    serve_bulk,
)
from dgpu.node.net.bulk.store import BulkGrant, BulkGrants, ContentStore, sha256_file
from dgpu.node.net.bulk.tickets import BulkTicket, check_ticket, make_ticket

__all__ = [
    "BulkGrant",
    "BulkGrants",
    "BulkServerConfig",
    "BulkTicket",
    "ContentStore",
    "bulk_addr",
    "check_ticket",
    "fetch",
    "make_ticket",
    "parse_bulk_addr",
    "push",
    "serve_bulk",
    "sha256_file",
]
