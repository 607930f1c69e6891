"""The bootstrap peer: a libp2p DHT server others join through, optionally relaying
every valid gossiped offer into a coordinator's index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import trio
from dgpu.bootstrap.sink import OfferSink, RelayStats, relay_offers
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.protocol.identity import Identity

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootstrapInfo:
    peer_id: str
    multiaddrs: tuple[str, ...]
    """Full addresses (with ``/p2p/<peer id>``) to give to the other nodes."""

    @property
    def multiaddr(self) -> str:
        return self.multiaddrs[0]


async def serve_bootstrap(
    identity: Identity,
    config: Libp2pConfig,
    *,
    sink: OfferSink | None = None,
    relay_stats: RelayStats | None = None,
    task_status: TaskStatus[BootstrapInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run until cancelled; ``await nursery.start(serve_bootstrap, ...)`` returns the
    addresses once the peer listens."""
    async with open_libp2p_network(identity, config) as net, trio.open_nursery() as nursery:
        if sink is not None:
            nursery.start_soon(
                lambda: relay_offers(net.subscribe_offers(), sink, stats=relay_stats)
            )
        info = BootstrapInfo(net.peer_id, tuple(net.listen_addrs))
        log.info("bootstrap peer %s listening on %s", info.peer_id, ", ".join(info.multiaddrs))
        task_status.started(info)
        await trio.sleep_forever()
