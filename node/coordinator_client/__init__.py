"""dgpu.node.coordinator_client: the coordinator's HTTP client, for nodes, relays and tools.

It lives on the node's side of the wire (the coordinator never imports it); writes are
signed with :mod:`dgpu.protocol.http_auth`, the scheme the coordinator verifies.
"""

from dgpu.node.coordinator_client.client import CoordinatorClient, IndexedOffer, OfferSearch
from dgpu.node.coordinator_client.errors import CoordinatorClientError

__all__ = ["CoordinatorClient", "CoordinatorClientError", "IndexedOffer", "OfferSearch"]
