from __future__ import annotations

import pytest

from tests.contracts.support import World, make_world


@pytest.fixture
async def world() -> World:
    """A fresh chain with the escrow initialized, a mint, a treasury, a renter, a provider."""
    return await make_world()
