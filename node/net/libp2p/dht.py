"""Reads from py-libp2p's Kademlia DHT that are fresh, not whatever is cached locally.

py-libp2p 0.8.1 answers ``find_providers`` from the local provider store alone as soon as
it holds any record for the key (including records it cached from an earlier lookup), and
``get_value`` from a local copy without re-validating it (LIBP2P.md hazards 6 and 9). A
node would then never see a provider that appeared after its first lookup. These helpers
set the local records aside during the network lookup and merge them back after, so the
answer is the union of the network's and ours. Between the two steps an inbound query
to this node may miss the records set aside; they are back within the lookup's time.
"""

from __future__ import annotations

import logging

from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS
from dgpu.node.net.records import select_newest
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

log = logging.getLogger(__name__)


async def find_providers_fresh(dht: KadDHT, key: str, count: int) -> list[PeerInfo]:
    """Providers of ``key`` from the network and the local store, one per peer."""
    store = dht.provider_store
    key_bytes = key.encode()
    local = store.providers.pop(key_bytes, None)
    try:
        found = await dht.find_providers(key, count)
    except LIBP2P_IO_ERRORS:
        log.info("provider lookup of %s failed", key, exc_info=True)
        found = []
    finally:
        if local:
            merged = store.providers.setdefault(key_bytes, {})
            for peer, record in local.items():
                current = merged.get(peer)
                if current is None or current.timestamp < record.timestamp:
                    merged[peer] = record
    seen: dict[ID, PeerInfo] = {}
    for info in [*found, *store.get_providers(key_bytes)]:
        if info.peer_id not in seen:
            seen[info.peer_id] = info
    return list(seen.values())[:count]


async def get_value_fresh(dht: KadDHT, key: str, *, now: int, quorum: int) -> bytes | None:
    """The newest valid value of ``key`` among the network's copies and ours."""
    store = dht.value_store
    key_bytes = key.encode()
    local = store.get(key_bytes)
    if local is not None:
        store.remove(key_bytes)
    try:
        value = await dht.get_value(key, quorum=quorum)
    except LIBP2P_IO_ERRORS:
        log.info("value lookup of %s failed", key, exc_info=True)
        value = None
    finally:
        if local is not None and store.get(key_bytes) is None:
            store.put_record(key_bytes, local)
    candidates = [v for v in (value, local.value if local is not None else None) if v]
    if not candidates:
        return None
    return candidates[select_newest(key, candidates, now=now)]
