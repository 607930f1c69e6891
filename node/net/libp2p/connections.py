"""Inbound connections: slots freed when the remote goes away, and limits of our own
(issue 12, attack 2; LIBP2P.md hazard 26).

Why slots were not freed: py-libp2p 0.8.1's swarm takes one of its ~250 inbound slots
(``max_connections - min_connections``) per TCP connection, then — after the upgrade —
keeps the handler alive with ``await self.manager.wait_finished()`` ("intentional
barrier") and releases the slot only when that returns: when the *swarm* stops, not when
the connection closes. Every inbound connection ever accepted holds a slot (and a parked
task) for the node's lifetime: after 250 of them, flood or not, the node refuses everyone.

:func:`install_connection_policy` replaces that handler on the host's swarm (TCP path
only; pre-multiplexed transports keep the library's) with one that holds the slot until
the connection's muxer closes, and puts our policy in front:

* per remote IP, at most ``max_per_ip`` inbound connections, counted **before** the Noise
  handshake (refusing costs an accept and a close, not a Diffie-Hellman);
* at most ``max_inbound`` in all, of which ``reserved`` only for protected peers (peers
  with funded jobs, by :class:`~dgpu.node.net.admission.StreamAdmission`): the identity is
  known only after the handshake, so an unprotected peer over the shared part is
  disconnected right after it;
* one connection per peer is the library's ``max_connections_per_peer=1``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
from dgpu.node.net.libp2p.config import ConnectionLimits
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS
from libp2p.abc import IHost, IMuxedConn
from libp2p.network.connection.raw_connection import RawConnection

log = logging.getLogger(__name__)


class ConnectionPolicy:
    """Counts live inbound connections per IP and in all."""

    def __init__(self, limits: ConnectionLimits, is_protected: Callable[[str], bool]) -> None:
        self.limits = limits
        self._is_protected = is_protected
        self._per_ip: Counter[str] = Counter()
        self.live = 0
        """Inbound connections open now (handshake included)."""
        self.refused: Counter[str] = Counter()

    def admit_ip(self, ip: str) -> bool:
        if self._per_ip[ip] >= self.limits.max_per_ip or self.live >= self.limits.max_inbound:
            self.refused["per_ip" if self._per_ip[ip] >= self.limits.max_per_ip else "total"] += 1
            return False
        self._per_ip[ip] += 1
        self.live += 1
        return True

    def release_ip(self, ip: str) -> None:
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        self.live -= 1

    def admit_peer(self, peer: str) -> bool:
        """After the handshake (``live`` counts this connection already)."""
        if self._is_protected(peer):
            return True
        if self.live > self.limits.max_inbound - self.limits.reserved:
            self.refused["shared"] += 1
            return False
        return True


def _remote_ip(stream: Any) -> str:
    try:
        address = stream.get_remote_address()
    except (AttributeError, OSError):
        return "?"
    return str(address[0]) if address else "?"


def remote_ip_of_stream(stream: Any) -> str:
    """The IP address a stream's connection comes from, for per-IP limits above the network
    (unfunded holds); "" when unknown or relayed (a circuit's address is its relay's, shared
    by everyone the relay serves: its own per-IP reservation limits apply instead)."""
    try:
        conn = stream.swarm_conn
        if conn is not None and conn.get_connection_type().name == "RELAYED":
            return ""
    except AttributeError:
        return ""
    ip = _remote_ip(stream)
    return "" if ip == "?" else ip


def install_connection_policy(host: IHost, policy: ConnectionPolicy) -> None:
    swarm: Any = host.get_network()
    library_handler = swarm._do_handle_inbound_connection

    async def handle_inbound(read_write_closer: Any, maddr: Any, failure_event: Any) -> None:
        if isinstance(read_write_closer, IMuxedConn):
            await library_handler(read_write_closer, maddr, failure_event)
            return
        ip = _remote_ip(read_write_closer)
        if not policy.admit_ip(ip):
            log.debug("refused an inbound connection from %s (limits)", ip)
            await _close_quietly(read_write_closer)
            return
        try:
            await _serve_connection(swarm, policy, read_write_closer, maddr)
        finally:
            policy.release_ip(ip)

    swarm._do_handle_inbound_connection = handle_inbound


async def _serve_connection(
    swarm: Any, policy: ConnectionPolicy, read_write_closer: Any, maddr: Any
) -> None:
    raw = RawConnection(read_write_closer, False)
    try:
        muxed = await swarm.upgrade_inbound_raw_conn(raw, maddr)
    except (*LIBP2P_IO_ERRORS, ValueError) as exc:
        # the library closed what it had; a failed handshake is routine on a public port
        log.debug("inbound upgrade from %s failed: %r", maddr, exc)
        await _close_quietly(raw)
        return
    peer = muxed.peer_id.to_base58()
    if not policy.admit_peer(peer):
        log.info("inbound connections full; closing the one from %s", peer)
        await _close_quietly(muxed)
        return
    # the slot lives exactly as long as the connection (the library's barrier waited for
    # the whole swarm to stop)
    await muxed.event_closed.wait()


async def _close_quietly(closable: Any) -> None:
    with trio.move_on_after(2) as scope:
        scope.shield = True
        try:
            await closable.close()
        except (*LIBP2P_IO_ERRORS, ValueError) as exc:
            log.debug("closing a refused connection failed: %r", exc)
