"""py-libp2p's log records as an operator sees them (``dgpu.node.net.libp2p.quiet``): known
noise lowered to DEBUG (gone at default verbosity, there with debug logging), other
library records on one line without the library's traceback, ours untouched."""

from __future__ import annotations

import importlib.util
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dgpu.node.net.libp2p.quiet import NOISE, quiet_libp2p_logs


@pytest.fixture
def log_output() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    quiet_libp2p_logs()
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = root.level
    # (under pytest the libp2p logger holds pytest's capture handlers and does not
    # propagate: quiet_libp2p_logs leaves a libp2p logger with handlers as it is)
    library = logging.getLogger("libp2p")
    loggers = [root] if library.propagate else [root, library]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield out, root
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        root.setLevel(level)


def _failed_dial() -> None:
    try:
        raise OSError(101, "Network is unreachable")
    except OSError:
        logging.getLogger("libp2p.transport.tcp.tcp").exception(
            "Unexpected error opening TCP stream: Failed to connect 10.0.2.2:4001"
        )


def test_known_noise_is_lowered_out_of_sight(
    log_output: tuple[io.StringIO, logging.Logger],
) -> None:
    out, root = log_output
    root.setLevel(logging.WARNING)
    _failed_dial()
    logging.getLogger("libp2p.pubsub.gossipsub").warning(
        "GRAFT flood detected from peer %s for topic %s, applying penalty", "QmX", "offers"
    )
    logging.getLogger("libp2p.relay.circuit_v2.dcutr").error("Error in DCUtR protocol")
    logging.getLogger("dgpu.node.net.libp2p.punch").warning("hole punch to X failed")
    assert out.getvalue() == "WARNING dgpu.node.net.libp2p.punch: hole punch to X failed\n"


def test_with_debug_logging_the_noise_shows_as_debug_with_its_traceback(
    log_output: tuple[io.StringIO, logging.Logger],
) -> None:
    out, root = log_output
    root.setLevel(logging.DEBUG)
    _failed_dial()
    text = out.getvalue()
    assert text.startswith("DEBUG libp2p.transport.tcp.tcp: Unexpected error opening TCP")
    assert "Traceback" in text and "Network is unreachable" in text


def test_other_library_records_keep_one_line_without_the_traceback(
    log_output: tuple[io.StringIO, logging.Logger],
) -> None:
    out, root = log_output
    root.setLevel(logging.WARNING)
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("libp2p.network.swarm").exception("Error in background prune")
    assert out.getvalue() == (
        "ERROR libp2p.network.swarm: Error in background prune (ValueError('bad frame'))\n"
    )
    # our own records keep their traceback
    out.truncate(0)
    out.seek(0)
    try:
        raise ValueError("ours")
    except ValueError:
        logging.getLogger("dgpu.node.provider").exception("job failed")
    assert "Traceback" in out.getvalue()


# What py-libp2p 0.8.1 logged (level, logger, message as it formats it) at default
# verbosity in a swarm of 100 node processes (benchmarks/bench_net.py) — each a single
# peer's failed dial, closed connection or mesh churn, handled by the library or raised
# to our code. One case per entry of quiet.NOISE added for them.
PEER = "12D3KooWPZY99Rsu4DoXhjr3TSLQ8uqFTWryJHvX4QJEFEs4tN7g"
SEEN_AT_100_NODES = [
    (
        logging.ERROR,
        "libp2p.transport.tcp.tcp",
        "Failed to open TCP stream: all attempts to connect to 127.0.0.1:37211 failed",
    ),
    (
        logging.ERROR,
        "libp2p.protocol_muxer.multiselect_client",
        "MultiselectClient handshake: read failed: fail to read from multiselect communicator",
    ),
    (
        logging.ERROR,
        "libp2p.network.swarm",
        f"failed to upgrade security for peer {PEER}: failed to negotiate the secure protocol",
    ),
    (logging.ERROR, "libp2p.network.swarm", f"fail to upgrade mux for peer {PEER}"),
    (
        logging.WARNING,
        "libp2p.network.swarm",
        f"[ADDCONN_FAIL] add_conn failed for peer {PEER}: Cancelled(source='deadline')\n"
        "Traceback (most recent call last):\n  File ...\ntrio.Cancelled: Cancelled\n",
    ),
    (
        logging.WARNING,
        "libp2p.network.swarm",
        f"Swarm::add_conn | muxer event_started set but is_established=False for peer {PEER}",
    ),
    (logging.WARNING, "libp2p.network.swarm", "Lifecycle reconcile pruned 2 phantom connection(s)"),
    (
        logging.ERROR,
        "libp2p.stream_muxer.yamux.yamux",
        f"Error in handle_incoming for peer {PEER}: ConnectionClosedError: TCP connection "
        "reset by remote peer: socket connection broken: [Errno 104] Connection reset by peer",
    ),
    (
        logging.WARNING,
        "libp2p.pubsub.gossipsub",
        f"GRAFT: ignoring request from {PEER}, back off until 1796552075",
    ),
    (
        logging.WARNING,
        "libp2p.pubsub.gossipsub",
        f"Cannot flush pending messages for {PEER}: no stream available",
    ),
    (
        logging.WARNING,
        "libp2p.kad_dht.peer_routing",
        f"Failed to open stream to {PEER}: Peer {PEER} recently failed all addresses "
        "(negative cache)",
    ),
    (
        logging.WARNING,
        "libp2p.kad_dht.provider_store",
        f"Error sending ADD_PROVIDER to {PEER}: Peer {PEER} recently failed all addresses",
    ),
    (logging.WARNING, "libp2p.kad_dht.provider_store", f"Failed to send ADD_PROVIDER to {PEER}"),
    (
        logging.WARNING,
        "libp2p.kad_dht.provider_store",
        f"Error getting providers from {PEER}: No known addresses to peer {PEER}",
    ),
    (
        logging.WARNING,
        "libp2p.kad_dht.value_store",
        f"Failed to store value at peer {PEER}: Peer {PEER} recently failed all addresses",
    ),
    (
        logging.WARNING,
        "libp2p.kad_dht.value_store",
        f"Failed to get value from peer {PEER}: Cannot read from stream; stream is reset",
    ),
    (logging.WARNING, "libp2p.kad_dht.kad_dht", f"Value not found for key /dgpu/offer/{PEER}"),
    (
        logging.WARNING,
        "libp2p.kad_dht.kad_dht",
        f"Failed to store value de0018a4 for key 2f6467 : invalid dgpu record under "
        f"'/dgpu/offer/{PEER}': offer expired at 1796555020 (now 1796555101)",
    ),
]


@pytest.mark.parametrize(
    ("level", "name", "message"),
    SEEN_AT_100_NODES,
    ids=[f"{name}:{message[:30]}" for _, name, message in SEEN_AT_100_NODES],
)
def test_what_a_swarm_of_100_nodes_logged_is_lowered_out_of_sight(
    log_output: tuple[io.StringIO, logging.Logger], level: int, name: str, message: str
) -> None:
    out, root = log_output
    root.setLevel(logging.WARNING)
    logging.getLogger(name).log(level, message)
    assert out.getvalue() == ""
    root.setLevel(logging.DEBUG)  # still there for whoever debugs
    logging.getLogger(name).log(level, message)
    assert out.getvalue() == f"DEBUG {name}: {message}\n"


@pytest.fixture(scope="module")
def library_source() -> str:
    """py-libp2p's source, string literals split over lines joined back."""
    import libp2p

    root = Path(libp2p.__file__).parent
    text = "\n".join(path.read_text() for path in sorted(root.rglob("*.py")))
    return re.sub(r'"\s*\n\s*f?"', "", text)


@pytest.mark.parametrize(("name", "text"), [entry for entry in NOISE if entry[0] != "root"])
def test_each_lowered_message_is_still_in_the_library_source(
    library_source: str, name: str, text: str
) -> None:
    """An upgrade of py-libp2p that rewords a message must not silently bring it back:
    the text of each entry is still in the library (in the logger's module, or in the
    exception it logs)."""
    assert importlib.util.find_spec(name) is not None, f"no module {name}"
    assert text in library_source, f"py-libp2p does not log {text!r} any more"


def test_a_library_message_of_several_lines_keeps_its_first(
    log_output: tuple[io.StringIO, logging.Logger],
) -> None:
    out, root = log_output
    root.setLevel(logging.WARNING)
    logging.getLogger("libp2p.network.swarm").warning(
        "connection to %s lost:\n%s", "QmX", "Traceback (most recent call last):\n  File x"
    )
    assert out.getvalue() == "WARNING libp2p.network.swarm: connection to QmX lost: [...]\n"
    out.truncate(0)
    out.seek(0)
    root.setLevel(logging.DEBUG)
    logging.getLogger("libp2p.network.swarm").warning("connection to %s lost:\n%s", "QmX", "tb")
    assert out.getvalue() == "WARNING libp2p.network.swarm: connection to QmX lost:\ntb\n"
