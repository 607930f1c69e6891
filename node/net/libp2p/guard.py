"""Every stream handler the host serves, guarded: a bad frame ends its stream, never the node.

py-libp2p 0.8.1 runs each inbound stream's handler in the swarm's nursery, and its own
handlers let peer-caused errors escape (LIBP2P.md hazards 3 and 25): one length-prefixed
frame on ``/meshsub/1.1.0`` that is not a protobuf ``RPC`` raises
``google.protobuf.message.DecodeError`` out of gossipsub's reader, through the swarm, and
ends ``trio.run`` — the whole node. Kademlia, identify, relay, DCUtR and AutoNAT have the
same shape. dgpu's own handlers are guarded by :func:`~dgpu.node.net.serving.run_guarded`;
this module guards *every* handler at registration instead, library ones included,
whenever they register (pubsub registers its protocols when its service starts, after the
host is built):

* :func:`guard_stream_handlers` wraps the handlers already in the host's multiselect
  table and replaces that table's ``add_handler`` so later ones are wrapped too;
* a handler that raises an ``Exception`` has its stream reset and the peer gets a strike;
  ``strikes_to_disconnect`` strikes within ``strike_window_s`` close the peer's connection
  (:class:`StrikeBook`). ``trio.Cancelled`` and other ``BaseException``s still propagate:
  shutdown must work.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID

log = logging.getLogger(__name__)

StreamHandler = Callable[[INetStream], Awaitable[None]]

_GUARDED = "_dgpu_guarded"


class StrikeBook:
    """Handler failures per peer in a sliding window; says when a peer has had enough."""

    def __init__(
        self,
        *,
        strikes_to_disconnect: int = 3,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_peers: int = 4096,
    ) -> None:
        self.strikes_to_disconnect = strikes_to_disconnect
        self.window_s = window_s
        self._clock = clock
        self._max_peers = max_peers
        self._strikes: dict[str, deque[float]] = {}
        self.total = 0

    def strike(self, peer: str) -> bool:
        """Count one failure of ``peer``; True when it reached the disconnect threshold."""
        now = self._clock()
        self.total += 1
        if peer not in self._strikes and len(self._strikes) >= self._max_peers:
            # bounded memory under a flood of fresh identities: forget the oldest entry
            self._strikes.pop(next(iter(self._strikes)))
        times = self._strikes.setdefault(peer, deque())
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.strikes_to_disconnect:
            times.clear()
            return True
        return False


def _peer_of(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id.to_base58())
    except AttributeError:
        return "?"


def guard_handler(
    protocol: str,
    handler: StreamHandler,
    on_failure: Callable[[str, str, Exception], Awaitable[None]],
) -> StreamHandler:
    """``handler`` with a boundary: an ``Exception`` resets the stream and is reported."""
    if getattr(handler, _GUARDED, False):
        return handler

    async def guarded(stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # handler boundary: nothing a peer sends may end the node
            peer = _peer_of(stream)
            log.info("%s stream from %s failed: %r", protocol, peer, exc, exc_info=True)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await _reset_quietly(stream)
                await on_failure(protocol, peer, exc)

    setattr(guarded, _GUARDED, True)
    return guarded


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as exc:  # the stream is dead either way
        log.debug("resetting a failed stream failed too: %r", exc)


def guard_stream_handlers(host: IHost, strikes: StrikeBook | None = None) -> StrikeBook:
    """Guard every handler ``host`` serves, now and later (idempotent per handler)."""
    book = strikes or StrikeBook()
    multiselect: Any = host.get_mux()

    async def on_failure(protocol: str, peer: str, exc: Exception) -> None:
        if peer == "?" or not book.strike(peer):
            return
        log.warning(
            "peer %s sent %d bad streams within %gs (last on %s); disconnecting it",
            peer,
            book.strikes_to_disconnect,
            book.window_s,
            protocol,
        )
        try:
            await host.disconnect(ID.from_base58(peer))
        except Exception as error:  # a dying connection may fail to close
            log.debug("disconnecting %s failed: %r", peer, error)

    handlers: dict[Any, Any] = multiselect.handlers
    for protocol, handler in list(handlers.items()):
        if protocol is not None and handler is not None:
            handlers[protocol] = guard_handler(str(protocol), handler, on_failure)
    unguarded_add = multiselect.add_handler

    def add_handler(protocol: Any, handler: Any) -> None:
        if protocol is not None and handler is not None:
            handler = guard_handler(str(protocol), handler, on_failure)
        unguarded_add(protocol, handler)

    multiselect.add_handler = add_handler
    return book
