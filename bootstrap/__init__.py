"""dgpu.bootstrap: a DHT server peer that other nodes join through, optionally relaying
gossiped offers into a coordinator's index (``dgpu bootstrap serve``)."""

from dgpu.bootstrap.errors import BootstrapError
from dgpu.bootstrap.server import BootstrapInfo, serve_bootstrap
from dgpu.bootstrap.sink import CoordinatorSink, OfferSink, RelayStats, relay_offers

__all__ = [
    "BootstrapError",
    "BootstrapInfo",
    "CoordinatorSink",
    "OfferSink",
    "RelayStats",
    "relay_offers",
    "serve_bootstrap",
]
