"""DCUtR hole punching under our own connection policy (LIBP2P.md hazards 20-22).

The policy (driven by :meth:`Libp2pNetwork._connect`): direct addresses first, then a relay
circuit, then — once a relayed connection exists — a hole punch in the background, then a
check that a direct connection really exists (hazard 20: the library's return value is not
to be trusted), and the circuit dialled again if the upgrade lost every connection (hazard
21). Control streams (negotiation, receipts) go over whatever connection exists meanwhile;
bulk streams wait for a punch in flight (:meth:`HolePuncher.settled`), so outputs move on
the direct connection when the NATs allow one.

What py-libp2p 0.8.1 does by itself, and what we change:

* ``DCUtRProtocol`` starts an auto-drive loop that punches every relayed peer from both
  sides at once (hazard 20). Here only the side that dialled the circuit initiates, once
  per connection, when our policy says so: :class:`_PolicyDriven` has no auto-drive; the
  other side only answers.
* After a punch the library closes the relayed connection 60 s later, streams and all;
  here it is closed only once no stream uses it (a tunnel or metering stream opened while
  the punch was in flight lives on).
* DCUtR predicts the addresses it tells the other side, and binds its punching dials, from
  ``host.get_addrs()``. Ours announces relay circuits only when a dial-back found us
  unreachable (:class:`~dgpu.node.net.libp2p.addresses.AddressBook`), which would leave
  DCUtR with no address at all: it gets a view of the host (:class:`_DirectView`) whose
  ``get_addrs`` is our concrete listen addresses (wildcards expanded, hazard 17).
* Punching works for TCP through port-preserving, endpoint-independent NATs only (hazard
  22). Against a symmetric NAT it fails; the attempt is bounded by
  :attr:`HolePuncher.timeout_s`, the connection stays relayed, and the peer is not punched
  again for :attr:`HolePuncher.retry_after_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import multiaddr
import trio
from dgpu.node.net.libp2p.addresses import AddressBook
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

if TYPE_CHECKING:  # trio_typing's stubs shadow trio's own annotations for mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

PUNCH_TIMEOUT_S: Final = 6.0
"""One hole punch, CONNECT/SYNC exchange and dials included: the exchange and the
library's first dial round (up to 5 s). A working punch took 0.3-1 s here; its next rounds
(up to ~20 s in all against a symmetric NAT) would only delay the verdict "relayed"."""
RETRY_AFTER_S: Final = 600.0
RELAY_CLOSE_AFTER_S: Final = 60.0
"""After a punch, the relayed connection is kept this long, then closed once idle."""
RELAY_IDLE_CHECK_S: Final = 10.0


def is_relayed(conn: INetConn) -> bool:
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:  # library boundary: a closing connection may fail to answer
        return True


def remote_addr(conn: INetConn) -> str:
    """Where a connection goes: its circuit address, or ``/ip4/IP/tcp/PORT`` of the socket."""
    addrs = [str(a) for a in conn.get_transport_addresses()]
    circuit = [a for a in addrs if "/p2p-circuit" in a]
    if circuit:
        return circuit[0]
    try:
        remote = conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        remote = None
    return f"/ip4/{remote[0]}/tcp/{remote[1]}" if remote else (addrs[0] if addrs else "?")


def direct_connections(host: IHost, peer: ID) -> list[INetConn]:
    return [c for c in host.get_network().get_connections(peer) if not is_relayed(c)]


class _DirectView:
    """``host`` as DCUtR must see it: ``get_addrs`` is our concrete listen addresses
    (the ones punching dials bind to and the NAT maps), everything else is the host."""

    def __init__(self, host: IHost, book: AddressBook) -> None:
        self._host = host
        self._book = book

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        suffix = f"/p2p/{self._host.get_id().to_base58()}"
        return [multiaddr.Multiaddr(f"{a}{suffix}") for a in self._book.direct()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


class _PolicyDriven(DCUtRProtocol):
    """DCUtR without the library's auto-drive loop (hazard 20): we decide when to punch.
    And the relayed connection is closed after a punch only once no stream uses it: the
    library closes it 60 s after the punch, with whatever streams were opened on it before
    (a tunnel, a metering stream that started while the punch was in flight)."""

    async def _auto_drive_loop(self) -> None:
        await trio.sleep_forever()

    def _schedule_relay_close(self, peer_id: ID) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._close_relayed_when_idle, peer_id)

    async def _close_relayed_when_idle(self, peer_id: ID) -> None:
        await trio.sleep(RELAY_CLOSE_AFTER_S)
        while True:
            try:
                conns = self.host.get_network().get_connections(peer_id)
                relayed = [c for c in conns if is_relayed(c)]
                if len(relayed) == len(conns) or not relayed:
                    return  # no direct connection left (keep the relay), or nothing to close
                idle = [c for c in relayed if not c.get_streams()]
                for conn in idle:
                    log.debug("closing the idle relayed connection to %s", peer_id)
                    await conn.close()
                if len(idle) == len(relayed):
                    return
            except Exception:  # library boundary: a connection may go away under us
                log.debug("closing the relayed connection to %s failed", peer_id, exc_info=True)
                return
            await trio.sleep(RELAY_IDLE_CHECK_S)


@dataclass
class PunchStats:
    attempts: int = 0
    direct: int = 0
    """Attempts that ended with a verified direct connection."""
    redialled: int = 0
    """Attempts after which no connection was left and the circuit was dialled again."""


class HolePuncher:
    """Initiates DCUtR to peers we reached through a relay; answers peers that do."""

    def __init__(
        self,
        host: IHost,
        book: AddressBook,
        *,
        timeout_s: float = PUNCH_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self.dcutr = _PolicyDriven(_DirectView(host, book))  # type: ignore[arg-type]
        # the library finds it here to forget a peer that disconnected
        host._dcutr_protocol = self.dcutr  # type: ignore[attr-defined]
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._inflight: dict[ID, trio.Event] = {}
        self._failed_at: dict[ID, float] = {}
        self._punched: set[ID] = set()
        self._nursery: trio.Nursery | None = None
        self.stats = PunchStats()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def was_punched(self, peer: ID) -> bool:
        """Whether our direct connection to ``peer`` is one a hole punch opened."""
        return peer in self._punched and bool(direct_connections(self._host, peer))

    def start(self, peer: ID, redial: Callable[[], Awaitable[None]]) -> None:
        """Punch ``peer`` in the background (we hold a relayed connection to it), unless
        a punch is already running, we have a direct connection, or a recent one failed."""
        if self._nursery is None or peer in self._inflight:
            return
        if direct_connections(self._host, peer):
            return
        now = self._clock()
        for gone in [p for p, at in self._failed_at.items() if now - at >= self.retry_after_s]:
            del self._failed_at[gone]
        if peer in self._failed_at:
            return
        done = self._inflight[peer] = trio.Event()
        self._nursery.start_soon(self._punch, peer, redial, done)

    async def settled(self, peer: ID) -> None:
        """Wait for a punch to ``peer`` that is in flight (returns at once otherwise)."""
        done = self._inflight.get(peer)
        if done is not None:
            await done.wait()

    async def punch(self, peer: ID, redial: Callable[[], Awaitable[None]]) -> bool:
        """One attempt in the foreground (benchmarks); True when a direct connection
        exists afterwards."""
        done = self._inflight[peer] = trio.Event()
        await self._punch(peer, redial, done)
        return bool(direct_connections(self._host, peer))

    async def _punch(
        self, peer: ID, redial: Callable[[], Awaitable[None]], done: trio.Event
    ) -> None:
        self.stats.attempts += 1
        started = trio.current_time()
        try:
            with trio.move_on_after(self.timeout_s):
                await self.dcutr.initiate_hole_punch(peer)
            seconds = trio.current_time() - started
            direct = direct_connections(self._host, peer)
            if direct:
                self.stats.direct += 1
                self._punched.add(peer)
                self._failed_at.pop(peer, None)
                log.info(
                    "hole punch to %s: direct connection to %s after %.1fs",
                    peer,
                    remote_addr(direct[0]),
                    seconds,
                )
                return
            self._failed_at[peer] = self._clock()
            log.info("hole punch to %s failed after %.1fs: staying on the relay", peer, seconds)
            if not self._host.get_network().get_connections(peer):
                # hazard 21: the upgrade can take the relayed connection down with it
                self.stats.redialled += 1
                log.info("the relayed connection to %s was lost in the upgrade; redialling", peer)
                with trio.move_on_after(self.timeout_s):
                    await redial()
        except Exception:  # background task: a library failure must not end the node
            log.info("hole punch to %s failed", peer, exc_info=True)
        finally:
            done.set()
            self._inflight.pop(peer, None)
