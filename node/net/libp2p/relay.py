"""Reachability from real evidence, circuit relay v2 reservations, and dialling circuits.

Dial-back (``/dgpu/dialback/1.0.0``, served by bootstrap peers): a node sends the TCP
port it listens on; the server opens a **fresh** TCP connection from its own address to
the IP the node's connection comes from, at that port, and answers ``ok IP`` or ``no IP``.
py-libp2p's AutoNAT "dials back" over the existing connection and so reports NAT'd peers
as public (LIBP2P.md hazard 16); a home router drops the fresh connection's SYN. The
server only ever dials the asker's own IP, so it cannot be used to probe third parties.

A node that is not reachable (``reserve_when_unreachable``: providers) reserves a slot on
each bootstrap peer that serves the relay and announces ``<relay>/p2p-circuit`` addresses
(:class:`~dgpu.node.net.libp2p.addresses.AddressBook`). py-libp2p's ``host.connect`` and
``new_stream`` drop circuit addresses (hazard 18): :func:`dial_circuit` dials them through
the relay transport explicitly, under the network's "direct first, then relay" policy.
Dialers take the STOP role only: with CLIENT a pure dialer also reserves (hazard 19).
"""

from __future__ import annotations

import logging
from typing import Final

import multiaddr
import trio
from dgpu.node.net.libp2p.addresses import AddressBook
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, Libp2pByteStream
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.transport import CircuitV2Transport

log = logging.getLogger(__name__)

DIALBACK_PROTOCOL: Final = TProtocol("/dgpu/dialback/1.0.0")
DIALBACK_TIMEOUT_S: Final = 3.0
_MAX_REQUEST: Final = 16


def is_circuit(addr: str) -> bool:
    return "/p2p-circuit" in addr


def serve_dialback(host: IHost, *, concurrency: int = 8) -> None:
    """Answer dial-back requests (bootstrap peers)."""
    limiter = trio.CapacityLimiter(concurrency)

    async def handle(stream: INetStream) -> None:
        raw = Libp2pByteStream(stream)
        try:
            remote = stream.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
            if limiter.available_tokens == 0 or not remote:
                await raw.reset()
                return
            async with limiter:
                with trio.move_on_after(DIALBACK_TIMEOUT_S):
                    request = await raw.receive_some(_MAX_REQUEST)
                port = int(request.decode().strip()) if request.strip().isdigit() else 0
                if not 0 < port < 65536:
                    await raw.reset()
                    return
                ip = str(remote[0])
                ok = await _tcp_reachable(ip, port)
                log.debug("dial-back to %s:%d: %s", ip, port, "ok" if ok else "no")
                await raw.send_all(f"{'ok' if ok else 'no'} {ip}\n".encode())
                await raw.aclose()
        except Exception:  # handler boundary: a bad asker never stops the node
            log.info("dial-back request failed", exc_info=True)
            await raw.reset()

    host.set_stream_handler(DIALBACK_PROTOCOL, handle)


async def _tcp_reachable(ip: str, port: int) -> bool:
    reached = False
    with trio.move_on_after(DIALBACK_TIMEOUT_S):
        try:
            stream = await trio.open_tcp_stream(ip, port)
        except OSError:
            return False
        reached = True
        await trio.aclose_forcefully(stream)
    return reached


async def ask_dialback(host: IHost, server: ID, port: int) -> tuple[bool, str] | None:
    """(reachable, the IP the server saw), or None when the server did not answer."""
    try:
        with trio.move_on_after(DIALBACK_TIMEOUT_S * 3):
            stream = Libp2pByteStream(await host.new_stream(server, [DIALBACK_PROTOCOL]))
            await stream.send_all(f"{port}\n".encode())
            answer = b""
            while len(answer) < 64 and not answer.endswith(b"\n"):
                chunk = await stream.receive_some(64)
                if not chunk:
                    break
                answer += chunk
            await stream.aclose()
            verdict, _, ip = answer.decode(errors="replace").strip().partition(" ")
            if verdict in ("ok", "no") and ip:
                return verdict == "ok", ip
    except (*LIBP2P_IO_ERRORS, Exception):
        log.info("dial-back request to %s failed", server, exc_info=True)
    return None


def listen_port(host: IHost) -> int | None:
    for addr in host.get_transport_addrs():
        if "/tcp/" in str(addr):
            return int(addr.value_for_protocol("tcp"))
    return None


async def check_reachability(host: IHost, servers: list[ID], book: AddressBook) -> bool | None:
    """Ask the servers in turn; the first answer decides. When reachable, the address
    the server saw (with our listen port) is announced."""
    port = listen_port(host)
    if port is None:
        return None
    for server in servers:
        answer = await ask_dialback(host, server, port)
        if answer is None:
            continue
        book.reachable, ip = answer
        if book.reachable:
            book.observed = [multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}")]
        log.info(
            "reachability by dial-back from %s: %s at %s:%d",
            server,
            "reachable" if book.reachable else "NOT reachable",
            ip,
            port,
        )
        return book.reachable
    return None


async def reserve_on(
    host: IHost,
    transport: CircuitV2Transport,
    relays: list[str],
    book: AddressBook,
    nursery: trio.Nursery,
) -> int:
    """Reserve a slot on each relay (full multiaddrs ``.../p2p/<relay>``); announce the
    circuit addresses of those that accepted. Returns how many did."""
    reserved = 0
    for text in relays:
        relay = info_from_p2p_addr(multiaddr.Multiaddr(text)).peer_id
        try:
            with trio.move_on_after(DIALBACK_TIMEOUT_S * 3):
                stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
                ok = await transport.reserve(stream, relay, nursery)  # also keeps it fresh
                await stream.close()
                if ok:
                    book.circuits.append(multiaddr.Multiaddr(f"{text}/p2p-circuit"))
                    reserved += 1
                    log.info("reserved a relay slot on %s", text)
                    continue
        except (*LIBP2P_IO_ERRORS, Exception):
            log.info("relay %s refused or failed the reservation", text, exc_info=True)
        log.warning("no relay slot on %s", text)
    return reserved


async def dial_circuit(transport: CircuitV2Transport, addr: multiaddr.Multiaddr) -> None:
    """Open a relayed connection (the swarm then uses it for new streams). py-libp2p
    raises anything from ``ConnectionError`` to an ExceptionGroup here (hazard 24): the
    caller gets ``ConnectionError``."""
    try:
        await transport.dial(addr)
    except Exception as exc:  # library boundary: its errors are not typed (hazard 24)
        raise ConnectionError(f"circuit {addr} failed: {exc!r}") from exc


def _peer_ip(host: IHost, peer: ID) -> str | None:
    for conn in host.get_network().get_connections(peer):
        try:
            remote = conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            continue
        if remote:
            return str(remote[0])
    return None


def limit_reservations_per_ip(host: IHost, circuit: CircuitV2Protocol, limit: int) -> None:
    """py-libp2p limits reservations in all, not per source (hazard 23): one host could
    take every slot with many peer IDs. Refuse a new reservation when peers connecting
    from the same IP already hold ``limit`` of them (a renewal always passes)."""
    manager = circuit.resource_manager
    library_check = manager.can_accept_reservation

    def can_accept_reservation(peer_id: ID) -> bool:
        if peer_id not in manager._reservations:
            ip = _peer_ip(host, peer_id)
            same = sum(1 for p in list(manager._reservations) if _peer_ip(host, p) == ip)
            if ip is not None and same >= limit:
                log.info("refused a relay reservation of %s: %d already from %s", peer_id, same, ip)
                return False
        return bool(library_check(peer_id))

    manager.can_accept_reservation = can_accept_reservation  # type: ignore[method-assign]


def limit_circuits_per_peer(circuit: CircuitV2Protocol, limit: int) -> None:
    """py-libp2p checks a reserved peer's circuit count when a CONNECT arrives but only
    counts the circuit once the destination answered, seconds later: CONNECTs sent at
    once all pass the check (a flood of 12 got 12 circuits past a limit of 4, seen in
    ``tests/hosts/test_relay_flood.py``). Count circuits to each destination from the
    moment they are asked for, in flight included, and refuse past ``limit``."""
    handle_connect = circuit._handle_connect
    circuits: dict[ID, int] = {}

    async def counted(stream: INetStream, msg: HopMessage) -> None:
        peer = ID(msg.peer.id)
        if circuits.get(peer, 0) >= limit:
            log.info("refused a relay circuit to %s: %d open or opening", peer, limit)
            await circuit._send_status(
                stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, "too many circuits to this peer"
            )
            await stream.reset()
            return
        circuits[peer] = circuits.get(peer, 0) + 1
        try:
            await handle_connect(stream, msg)
        finally:
            circuits[peer] -= 1
            if not circuits[peer]:
                del circuits[peer]

    circuit._handle_connect = counted  # type: ignore[method-assign]
