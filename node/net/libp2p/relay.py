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
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import multiaddr
import trio
from dgpu.node.net.interface import CircuitLimit
from dgpu.node.net.libp2p.addresses import AddressBook
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, Libp2pByteStream
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage, StopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import STREAM_READ_TIMEOUT, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg

log = logging.getLogger(__name__)

DIALBACK_PROTOCOL: Final = TProtocol("/dgpu/dialback/1.0.0")
DIALBACK_TIMEOUT_S: Final = 3.0
_MAX_REQUEST: Final = 16
_K = TypeVar("_K")


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


MAX_REMEMBERED_CIRCUITS: Final = 1024


def remember_circuit_limits(circuit: CircuitV2Protocol) -> dict[ID, CircuitLimit]:
    """The limits relays state for the circuits others open to us, by source peer (the
    last circuit from each; at most :data:`MAX_REMEMBERED_CIRCUITS` peers).

    A relay v2 STOP CONNECT carries the circuit's ``Limit`` (bytes, seconds); py-libp2p
    reads and drops it. This STOP handler is the library's (answer OK, then upgrade the
    stream into a connection) with the limit kept, so a provider can tell a renter it
    reaches only through a relay, at negotiation, that its job would not fit."""
    limits: dict[ID, CircuitLimit] = {}

    async def handle_stop(stream: INetStream) -> None:
        try:
            with trio.fail_after(STREAM_READ_TIMEOUT):
                msg = await read_delimited_msg(stream, StopMessage)
            if msg.type != StopMessage.CONNECT:
                await circuit._send_stop_status(
                    stream, StatusCode.MALFORMED_MESSAGE, "Invalid message type"
                )
                await circuit._close_stream(stream)
                return
            source = ID(msg.peer.id)
            limits.pop(source, None)
            if msg.HasField("limit"):
                limits[source] = CircuitLimit(data_bytes=msg.limit.data, seconds=msg.limit.duration)
                while len(limits) > MAX_REMEMBERED_CIRCUITS:
                    del limits[next(iter(limits))]
            await circuit._send_stop_status(stream, StatusCode.OK, "Connection established")
            await circuit.handle_incoming_connection(stream, msg.peer.id)
        except Exception as exc:  # handler boundary: as the library's, the stream ends
            log.info("relayed connection refused: %r", exc)
            await circuit._close_stream(stream)

    circuit._handle_stop_stream = handle_stop  # type: ignore[method-assign]
    return limits


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


def limit_circuits_per_peer(
    host: IHost, circuit: CircuitV2Protocol, limit: int, per_source: int
) -> None:
    """py-libp2p checks a reserved peer's circuit count when a CONNECT arrives but only
    counts the circuit once the destination answered, seconds later: CONNECTs sent at
    once all pass the check (a flood of 12 got 12 circuits past a limit of 4, seen in
    ``tests/hosts/test_relay_flood.py``). Count circuits to each destination from the
    moment they are asked for, in flight included, and refuse past ``limit``.

    ``limit`` counts per destination only, so one source could take all of a provider's
    circuits and lock its renters out: of those, one source peer — and all peers
    connecting from one IP together — may hold ``per_source``. And each circuit's
    clean-up closes its own streams only (:class:`_PerCircuit`)."""
    handle_connect = circuit._handle_connect
    circuits: dict[ID, int] = {}
    sources: dict[tuple[ID, str], int] = {}
    relays = circuit._active_relays = _PerCircuit()

    async def refuse(stream: INetStream, why: str) -> None:
        await circuit._send_status(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, why)
        await stream.close()  # not reset: the STATUS reaches the asker before the end

    async def counted(stream: INetStream, msg: HopMessage) -> None:
        peer = ID(msg.peer.id)
        source = stream.muxed_conn.peer_id
        keys = [(peer, f"peer {source}")]
        ip = _peer_ip(host, source)
        if ip is not None:
            keys.append((peer, f"ip {ip}"))
        if circuits.get(peer, 0) >= limit:
            log.info("refused a relay circuit to %s: %d open or opening", peer, limit)
            await refuse(stream, "too many circuits to this peer")
            return
        if any(sources.get(key, 0) >= per_source for key in keys):
            log.info(
                "refused a relay circuit from %s (%s) to %s: %d open or opening from it",
                *(source, ip, peer, per_source),
            )
            await refuse(stream, "too many circuits from this source to this peer")
            return
        circuits[peer] = circuits.get(peer, 0) + 1
        for key in keys:
            sources[key] = sources.get(key, 0) + 1
        token = _CIRCUIT.set(stream)
        try:
            await handle_connect(stream, msg)
        finally:
            _CIRCUIT.reset(token)
            relays.forget(stream)
            _release(circuits, peer)
            for key in keys:
                _release(sources, key)

    circuit._handle_connect = counted  # type: ignore[method-assign]


_CIRCUIT: ContextVar[INetStream | None] = ContextVar("dgpu_relay_circuit", default=None)
"""The HOP stream of the CONNECT a relay task is handling (its relaying tasks inherit it)."""


class _PerCircuit(dict[Any, tuple[INetStream, INetStream | None]]):
    """py-libp2p keeps a relay's open circuits by peer ID only, and when one circuit
    ends it closes the streams stored under that peer — those of the latest circuit to
    the same peer, someone else's: a renter's circuit to a provider was cut the moment an
    attacker's circuits to that provider timed out (``tests/hosts/test_relay_flood.py``).
    Stored here under (peer, the circuit's HOP stream), so each circuit's clean-up finds
    its own streams only."""

    def _key(self, peer: object) -> tuple[object, INetStream | None]:
        return (peer, _CIRCUIT.get())

    def __setitem__(self, peer: Any, value: tuple[INetStream, INetStream | None]) -> None:
        super().__setitem__(self._key(peer), value)

    def __getitem__(self, peer: Any) -> tuple[INetStream, INetStream | None]:
        return super().__getitem__(self._key(peer))

    def __contains__(self, peer: object) -> bool:
        return super().__contains__(self._key(peer))

    def __delitem__(self, peer: Any) -> None:
        super().__delitem__(self._key(peer))

    def forget(self, circuit: INetStream) -> None:
        """Drop what a circuit left behind (the library leaves an entry when the
        destination could not be reached)."""
        for key in [k for k in self.keys() if k[1] is circuit]:
            super().__delitem__(key)


def _release(counts: dict[_K, int], key: _K) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]
