"""Building a py-libp2p host the safe way, and the glue between its streams and ours.

* Noise is the only security transport (the default host also accepts plaintext);
* Yamux is the only muxer;
* ``ConnectionConfig(max_connections_per_peer=1)`` avoids a 250 ms wait after every dial;
* writes of the Noise session are shielded from cancellation (see
  :func:`shield_secure_writes`);
* an optional private-network key (pnet PSK) keeps other libp2p swarms out: the DHT always
  speaks ``/ipfs/kad/1.0.0`` whatever prefix is configured.
"""

from __future__ import annotations

import logging
from typing import cast

import multiaddr
import trio
from dgpu.node.net.errors import StreamClosed as NetStreamClosed
from dgpu.node.net.errors import StreamReset as NetStreamReset
from dgpu.node.net.libp2p.addresses import AddressBook
from dgpu.node.net.libp2p.config import Libp2pConfig
from dgpu.protocol.identity import Identity
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

log = logging.getLogger(__name__)

# Errors py-libp2p raises from a stream or connection that broke under us.
LIBP2P_IO_ERRORS = (BaseLibp2pError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


_SECURE_WRITE_DEADLINE_S = 30.0


def shield_secure_writes() -> None:
    """Make each encrypted write of py-libp2p's secure session uncancellable (idempotent).

    py-libp2p 0.8.1 encrypts a Noise frame (advancing the nonce) and then writes it; a
    cancellation in between (any timeout around a stream write: the DHT's own query
    timeouts, ours) skips a nonce or leaves half a frame on the wire. The peer then fails
    to authenticate every later frame ("NoiseInvalidMessage: Failed authentication") and
    drops the whole connection, with every stream on it: under load, connections between
    DHT peers died this way within seconds. Shielding the write (bounded by a deadline,
    after which the connection is lost anyway) keeps the session in step.
    """
    if getattr(SecureSession.write, "_dgpu_shielded", False):
        return
    unshielded = SecureSession.write

    async def write(self: SecureSession, data: bytes) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _SECURE_WRITE_DEADLINE_S):
            await unshielded(self, data)

    write._dgpu_shielded = True  # type: ignore[attr-defined]
    SecureSession.write = write  # type: ignore[method-assign]


def build_host(
    identity: Identity, config: Libp2pConfig, addresses: AddressBook | None = None
) -> IHost:
    """The host; ``addresses`` decides what it announces (identify, DHT records): without
    it py-libp2p announces wildcard listeners as they are (hazard 17)."""
    shield_secure_writes()
    key_pair = cast(KeyPair, identity.to_libp2p())
    noise = NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        psk=config.psk.hex() if config.psk is not None else None,
    )
    if addresses is not None:
        _announce_from(host, addresses)
    return host


def _announce_from(host: IHost, addresses: AddressBook) -> None:
    """Make ``host.get_addrs()`` (identify, DHT records, our offers) announce what
    ``addresses`` says. Not through py-libp2p's ``addrs_factory``: its ``get_addrs``
    strips everything from the first ``/p2p/`` of each address and appends our ID, which
    turns ``<relay>/p2p/<relay id>/p2p-circuit`` into the relay's own address under our
    peer ID."""
    addresses.transport = host.get_transport_addrs
    observed_manager = getattr(host, "_observed_addr_manager", None)

    def get_addrs() -> list[multiaddr.Multiaddr]:
        candidates = list(host.get_transport_addrs())
        if observed_manager is not None:
            candidates += list(observed_manager.addrs())
        suffix = f"/p2p/{host.get_id().to_base58()}"
        return [multiaddr.Multiaddr(f"{a}{suffix}") for a in addresses(candidates)]

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def listen_multiaddrs(config: Libp2pConfig) -> list[multiaddr.Multiaddr]:
    return [multiaddr.Multiaddr(addr) for addr in config.listen]


class Libp2pByteStream:
    """A :class:`~dgpu.node.net.framing.ByteStream` over a py-libp2p ``INetStream``."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._reset = False

    async def send_all(self, data: bytes) -> None:
        try:
            await self._stream.write(data)
        except StreamClosed as exc:
            raise NetStreamClosed("stream closed for writing") from exc
        except LIBP2P_IO_ERRORS as exc:
            raise NetStreamReset(f"stream write failed: {exc!r}") from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            data: bytes = await self._stream.read(max_bytes)
        except StreamEOF:
            return b""
        except (StreamError, *LIBP2P_IO_ERRORS) as exc:
            raise NetStreamReset(f"stream read failed: {exc!r}") from exc
        return data

    async def aclose(self) -> None:
        try:
            await self._stream.close()
        except LIBP2P_IO_ERRORS as exc:
            raise NetStreamReset(f"stream close failed: {exc!r}") from exc

    async def reset(self) -> None:
        if self._reset:
            return
        self._reset = True
        try:
            await self._stream.reset()
        except (*LIBP2P_IO_ERRORS, AttributeError) as exc:
            # best effort: the stream is gone either way (AttributeError: py-libp2p on a
            # stream whose connection already went away)
            log.debug("stream reset failed: %r", exc)
