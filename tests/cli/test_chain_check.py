"""``check_chain``: a node store remembers the chain its records are on (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dgpu.cli.nodeopts import ChainMismatch, check_chain
from dgpu.node.store import ChannelRecord, NodeStore


def channel(now: int) -> ChannelRecord:
    return ChannelRecord(
        channel=bytes([1]) * 32,
        job_id=bytes(16),
        provider=bytes([2]) * 32,
        mint=bytes([3]) * 32,
        deposit=10,
        open_nonce=1,
        expires_at=now + 60,
        open_signature="",
        status="open",
        reclaim_signature="",
        reclaimed=0,
        updated_at=now,
    )


async def test_the_first_chain_is_recorded_and_another_refused_in_words(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "data" / "node.sqlite") as store:
        assert store.chain() is None
        await check_chain(store, "GenesisA", "http://a")
        assert store.chain() == ("GenesisA", "http://a")
        # nothing on chain yet: the data dir may move to another chain
        await check_chain(store, "GenesisB", "http://b")
        assert store.chain() == ("GenesisB", "http://b")
        store.save_channel(channel(100))
        await check_chain(store, "GenesisB", "http://elsewhere")  # same chain, other URL
        with pytest.raises(ChainMismatch) as caught:
            await check_chain(store, "GenesisC", "http://c")
        assert str(caught.value).startswith(
            "this data dir's channels are on chain GenesisB, but http://c is chain GenesisC:"
        )
        assert str(tmp_path / "data") in str(caught.value)
        assert store.chain() == ("GenesisB", "http://b")  # unchanged
    with NodeStore.open(tmp_path / "data" / "node.sqlite") as store:
        assert store.chain() == ("GenesisB", "http://b")  # durable
