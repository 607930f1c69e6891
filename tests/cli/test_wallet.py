"""``dgpu wallet`` against a real ``dgpu chain serve``, every value from a profile:
airdrop (SOL and devnet dGPU), balance, transfer, and an empty history."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dgpu.cli import profile as profiles
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import Node, serve_node

pytestmark = pytest.mark.slow


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


def wallet(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", "wallet", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_wallet_from_a_profile(tmp_path: Path, chain_node: Node) -> None:
    me, friend = Identity.generate(), Identity.generate()
    save_identity(me, tmp_path / "me.json")
    save_identity(friend, tmp_path / "friend.json")
    values: dict[str, profiles.Value] = {
        "rpc": chain_node.url,
        "mint": str(chain_node.mint),
        "key": str(tmp_path / "me.json"),
        "data_dir": str(tmp_path / "data"),
        "mint_authority": str(chain_node.mint_authority_keyfile),
    }
    path = profiles.config_path()
    profiles.save(profiles.ConfigFile(path, "dev", {"dev": profiles.Profile("dev", values)}))

    dropped = wallet("airdrop", "--sol", "2", "--dgpu", "50")
    assert dropped["address"] == me.address
    assert dropped["lamports"] == 2 * 10**9 and dropped["dgpu"] == 50 * 10**9

    sent = wallet("transfer", friend.address, "12.5")
    assert sent["amount"] == 12_500_000_000 and sent["signature"]
    sol = wallet("transfer", friend.address, "0.5", "--sol")
    assert sol["unit"] == "lamports"

    mine = wallet("balance")
    assert mine["dgpu"] == 37_500_000_000
    assert mine["lamports"] < 1_500_000_000  # less the fees and the friend's token account
    theirs = wallet("balance", "--key", str(tmp_path / "friend.json"))
    assert theirs == {
        "address": friend.address,
        "mint": str(chain_node.mint),
        "lamports": 500_000_000,
        "dgpu": 12_500_000_000,
    }
    history = wallet("history")
    assert history["entries"] == [] and "getSignaturesForAddress" in history["source"]
