"""py-libp2p's log output, made useful (LIBP2P.md hazards 12, 15, 24): the one place that
decides which of the library's records an operator sees.

At import py-libp2p detaches its ``libp2p`` logger (``propagate = False``, no handler, level
WARNING), so its warnings reach stderr through logging's last-resort handler whatever the
application configured, and one module raises itself to INFO. We route them through the
application's logging at WARNING and above, and:

* **lower** the records known to be noise — events py-libp2p handles itself (a failed
  direct dial, which the swarm answers by trying the next address and then raising to our
  code; races of its own shutdown; peers that went away; gossipsub's GRAFT-flood penalty
  on ordinary mesh churn) or that our code reports in its own words (hole punching:
  :mod:`~dgpu.node.net.libp2p.punch`): they become DEBUG records, shown only with debug
  logging on (``-vv``);
* **shorten** every other library record to one line at default verbosity: its traceback
  (of the library's internals) is replaced by the exception's text, a message of several
  lines cut to its first, both kept in full with debug logging on.

Every record of ``dgpu.*`` passes untouched, and so does anything CRITICAL.
"""

from __future__ import annotations

import logging
import os
from typing import Final

# (logger name, substring of the message; "" for every record of that logger)
NOISE: Final[tuple[tuple[str, str], ...]] = (
    # py-libp2p's own DHT client closes its request streams; the server logs each close
    ("libp2p.kad_dht.kad_dht", "Failed to read DHT message from stream"),
    # py-libp2p's own routing-table refresh sends 64-byte keys and its server complains
    ("libp2p.kad_dht.kad_dht", "FIND_NODE key is not a valid PeerId"),
    # the DHT tries to reach peers it knows only by relay circuits (NAT'd providers)
    ("libp2p.kad_dht.provider_store", "are unusable (relay-only"),
    # raised to us as well: Libp2pNetwork reports it as a typed error
    ("libp2p.host.basic_host", "Failed to open stream to peer"),
    # every failed direct dial (a peer's private or stale address, a punch that missed):
    # the swarm tries the next address and raises to us when none worked
    ("libp2p.transport.tcp.tcp", "Unexpected error opening TCP stream"),
    # gossipsub penalises and prunes a peer that re-grafts soon after a prune; on ordinary
    # mesh churn this fires hundreds of times at 30 nodes (hazard 15)
    ("libp2p.pubsub.gossipsub", "GRAFT flood detected"),
    # each punch's outcome is logged by punch.py, with the address it reached
    ("libp2p.relay.circuit_v2.dcutr", ""),
    # -- seen at 100 nodes (benchmarks/bench_net.py) ----------------------------------
    # a dial or a connection upgrade that failed: each site raises to whoever dialled (the
    # DHT or gossipsub, which go on with other peers, or our code, which reports in words:
    # "bootstrap peer ... unreachable", a typed error to the renter)
    ("libp2p.transport.tcp.tcp", "Failed to open TCP stream"),
    ("libp2p.protocol_muxer.multiselect_client", "MultiselectClient handshake: "),
    ("libp2p.network.swarm", "failed to upgrade security for peer"),
    ("libp2p.network.swarm", "fail to upgrade mux for peer"),
    ("libp2p.network.swarm", "[ADDCONN_FAIL] add_conn failed"),
    # the swarm's own bookkeeping of connections it set up or tore down
    ("libp2p.network.swarm", "is_established=False for peer"),
    ("libp2p.network.swarm", "phantom connection(s)"),
    # a peer closed or reset its connection (or sent what yamux could not read): yamux
    # drops or skips it, and the streams on it fail to their owners
    ("libp2p.stream_muxer.yamux.yamux", "Error in handle_incoming for peer"),
    # gossipsub's back-off: a peer re-grafting within it is pruned again (mesh churn, as
    # the GRAFT flood above); a pending message for a peer that left is dropped
    ("libp2p.pubsub.gossipsub", "GRAFT: ignoring request from"),
    ("libp2p.pubsub.gossipsub", "Cannot flush pending messages for"),
    # one DHT peer not reached during a lookup or a put: the DHT goes on with the others
    # (a node that reaches nobody is told apart by "bootstrap peer ... unreachable")
    ("libp2p.kad_dht.peer_routing", "Failed to open stream to"),
    ("libp2p.kad_dht.provider_store", "Error sending ADD_PROVIDER to"),
    ("libp2p.kad_dht.provider_store", "Failed to send ADD_PROVIDER to"),
    ("libp2p.kad_dht.provider_store", "Error getting providers from"),
    ("libp2p.kad_dht.value_store", "Failed to store value at peer"),
    ("libp2p.kad_dht.value_store", "Failed to get value from peer"),
    # a lookup of a value nobody holds: returned to our code as "none"
    ("libp2p.kad_dht.kad_dht", "Value not found for key"),
    # a peer's PUT_VALUE our validator refused (a record expired in transit, or invalid):
    # the request is reset; the message carries the whole record in hex
    ("libp2p.kad_dht.kad_dht", "Failed to store value"),
    # py-libp2p logs this one on the root logger, for a peer whose identify is pending
    ("root", "Error getting transport addresses: 'peer ID not found'"),
)


def _debugging() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


class Libp2pNoiseFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        """Records lowered out of sight (debug logging off)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL or not _from_libp2p(record):
            return True
        for name, text in NOISE:
            if (
                record.name == name or (name != "root" and record.name.startswith(name + "."))
            ) and text in record.getMessage():
                if not _debugging():
                    self.dropped += 1
                    return False
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return True
        if not _debugging():
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text = f"{text} ({record.exc_info[1]!r})"
                record.exc_info = None
                record.exc_text = None
            # (some of the library's messages carry a traceback in their text)
            first, _, rest = text.partition("\n")
            record.msg = f"{first} [...]" if rest.strip() else first
            record.args = None
        return True


def _from_libp2p(record: logging.LogRecord) -> bool:
    if record.name == "libp2p" or record.name.startswith("libp2p."):
        return True
    return record.name == "root" and f"{os.sep}libp2p{os.sep}" in record.pathname


_filter = Libp2pNoiseFilter()


def quiet_libp2p_logs() -> Libp2pNoiseFilter:
    """Idempotent: route ``libp2p`` records to the application's handlers, minus noise."""
    root = logging.getLogger("libp2p")
    if not root.handlers:  # (with LIBP2P_DEBUG set py-libp2p logs to its own handlers)
        root.propagate = True
        # auto_connector sets itself to INFO at import; let it inherit libp2p's WARNING
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if (
                name.startswith("libp2p.")
                and isinstance(logger, logging.Logger)
                and logging.NOTSET < logger.level < root.getEffectiveLevel()
            ):
                logger.setLevel(logging.NOTSET)
    # A logger's filters see only its own records (not its children's), so the filter
    # goes on every libp2p logger that exists now (py-libp2p is imported by then) and on
    # the root logger (records py-libp2p logs there).
    names = {name for name, _ in NOISE} | {
        name for name in logging.root.manager.loggerDict if name.startswith("libp2p")
    }
    for name in names:
        logger = logging.getLogger(None if name == "root" else name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
    return _filter
