"""Provider configuration refuses values the escrow or the protocol could not honour."""

from __future__ import annotations

import pytest
from dgpu.node.config import ConfigError, ProviderConfig

MINT = b"\x05" * 32
PROGRAM = b"\x07" * 32


@pytest.mark.parametrize("price", [0, -1])
def test_a_fixed_price_below_one_base_unit_is_refused(price: int) -> None:
    with pytest.raises(ConfigError, match="price_per_gpu_second"):
        ProviderConfig(mint=MINT, program_id=PROGRAM, price_per_gpu_second=price)


def test_a_fixed_price_of_one_base_unit_is_accepted() -> None:
    config = ProviderConfig(mint=MINT, program_id=PROGRAM, price_per_gpu_second=1)
    assert config.price_per_gpu_second == 1
