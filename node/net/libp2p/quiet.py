"""py-libp2p's log output, made useful (LIBP2P.md hazard 12).

At import py-libp2p detaches its ``libp2p`` logger (``propagate = False``, no handler, level
WARNING), so its warnings reach stderr through logging's last-resort handler whatever the
application configured, and one module raises itself to INFO. We route them through the
application's logging at WARNING and above, and drop, by logger and message, only the
records known to be noise: errors py-libp2p logs for races of its
own shutdown and for peers that went away, which it handles itself. Everything else,
including every record of ``dgpu.*``, passes.
"""

from __future__ import annotations

import logging
import os
from typing import Final

# (logger name, substring of the message) of known-harmless records.
NOISE: Final[tuple[tuple[str, str], ...]] = (
    # py-libp2p's own DHT client closes its request streams; the server logs each close
    ("libp2p.kad_dht.kad_dht", "Failed to read DHT message from stream"),
    # py-libp2p's own routing-table refresh sends 64-byte keys and its server complains
    ("libp2p.kad_dht.kad_dht", "FIND_NODE key is not a valid PeerId"),
    # raised to us as well: Libp2pNetwork reports it as a typed error
    ("libp2p.host.basic_host", "Failed to open stream to peer"),
    # py-libp2p logs this one on the root logger, for a peer whose identify is pending
    ("root", "Error getting transport addresses: 'peer ID not found'"),
)


class Libp2pNoiseFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        for name, text in NOISE:
            if (
                record.name == name
                and (name != "root" or f"{os.sep}libp2p{os.sep}" in record.pathname)
                and text in record.getMessage()
            ):
                self.dropped += 1
                return False
        return True


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
    # A logger's filters see only its own records, so filter each noisy logger itself.
    for name in {name for name, _ in NOISE}:
        logger = logging.getLogger(None if name == "root" else name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
    return _filter
