from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contracts_client.support import Node, serve_node


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One ``dgpu chain serve`` (escrow and mint preloaded) shared by the session."""
    with serve_node(tmp_path_factory.mktemp("chain-node")) as running:
        yield running
