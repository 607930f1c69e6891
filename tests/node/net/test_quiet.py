"""py-libp2p's log records as an operator sees them (``dgpu.node.net.libp2p.quiet``): known
noise lowered to DEBUG (gone at default verbosity, there with debug logging), other
library records on one line without the library's traceback, ours untouched."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from dgpu.node.net.libp2p.quiet import quiet_libp2p_logs


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
