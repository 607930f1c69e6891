"""Anchor clients, unmodified, on the escrow over ``dgpu chain serve``: Anchor TS
(@coral-xyz/anchor 0.32, run by ``node``) with ``program.methods.<ix>(...).accounts(...).rpc()``,
``program.account.channel.all()`` with a memcmp filter and ``.fetch()`` on the IDL that
``dgpu chain idl --anchor`` derives from the shipped one; anchorpy's ``program.rpc[...]`` on
the shipped IDL. What the clients did is read back from the chain with our own decoder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anchorpy.coder.coder import Coder
from anchorpy.program.context import Context
from anchorpy.program.core import Program
from anchorpy.provider import Provider, Wallet
from anchorpy_core.idl import Idl
from dgpu.contracts import PROGRAM_ID, idl_path
from dgpu.contracts_client import localnet
from dgpu.contracts_client.anchor_spec import anchor_spec, discriminator
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.errors import IdlConversionError
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelAccount
from dgpu.contracts_client.pda import (
    associated_token_address,
    channel_address,
    config_address,
    vault_address,
)
from dgpu.protocol.keyfile import load_identity
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from spl.token.constants import TOKEN_PROGRAM_ID

from tests.contracts_client.support import SOL, Node, funded, serve_node

JS_DIR = Path(__file__).parent / "js"
DEPOSIT = 700_000_000
TOP_UP = 50_000_000
ANCHOR_TS_CHANNEL_ID = 18446744073709551557  # what anchor.mjs opens


@dataclass(frozen=True)
class Setup:
    node: Node
    renter: Keypair
    renter_keyfile: Path
    expiry: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A chain with the escrow config initialized and a renter holding SOL and tokens."""
    tmp = tmp_path_factory.mktemp("anchor-clients")
    with serve_node(tmp / "chain") as node:
        authority = load_identity(node.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(node.mint, authority)
        renter = Keypair()

        async def build() -> int:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                treasury = Keypair()
                await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
                await EscrowClient(chain).initialize(
                    authority, admin=(await funded(chain)).pubkey(), treasury=treasury.pubkey(),
                    mints=[node.mint],
                )  # fmt: skip
                await chain.request_airdrop(renter.pubkey(), SOL)
                await localnet.fund_wallet(chain, renter.pubkey(), mint=mint, tokens=4 * DEPOSIT)
                return await chain.unix_time() + 3600

        expiry = anyio.run(build, backend="trio")
        keyfile = tmp / "renter.json"
        keyfile.write_text(json.dumps(list(bytes(renter))))
        yield Setup(node, renter, keyfile, expiry)


async def read_channel(node: Node, channel: Pubkey) -> ChannelAccount:
    async with RpcChain(node.url, poll_interval=0.05) as chain:
        return await EscrowClient(chain).read_channel(channel)


def statuses(node: Node, *signatures: str) -> list[Any]:
    async def main() -> list[Any]:
        async with AsyncClient(node.url, commitment=Confirmed) as client:
            sigs = [Signature.from_string(s) for s in signatures]
            return list((await client.get_signature_statuses(sigs)).value)

    return anyio.run(main)


def test_anchor_ts_methods_rpc_account_all_and_fetch(setup: Setup, tmp_path: Path) -> None:
    node_bin = shutil.which("node")
    assert node_bin is not None, "node is missing: run scripts/setup.sh (scripts/js-deps.sh)"
    assert (JS_DIR / "node_modules" / "@coral-xyz" / "anchor").is_dir(), (
        "@coral-xyz/anchor is missing: run scripts/js-deps.sh"
    )
    idl_file = tmp_path / "escrow.anchor.json"
    subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", "chain", "idl", "--anchor", "--out", idl_file],
        check=True,
        timeout=60,
    )
    renter = setup.renter.pubkey()
    provider = Keypair().pubkey()
    args = [setup.node.url, idl_file, setup.renter_keyfile, setup.node.mint, provider]
    done = subprocess.run(
        [node_bin, "anchor.mjs", *map(str, args), str(DEPOSIT), str(TOP_UP), str(setup.expiry)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    # Anchor resolved the PDAs from the converted seeds to the program's own addresses
    channel = channel_address(renter, provider, ANCHOR_TS_CHANNEL_ID)
    assert seen["channel"] == str(channel) and seen["config"] == str(config_address())
    assert all(s is not None and s.err is None for s in statuses(setup.node, seen["openSig"]))
    assert all(s is not None and s.err is None for s in statuses(setup.node, seen["topUpSig"]))
    state = anyio.run(read_channel, setup.node, channel)
    assert (state.renter, state.provider, state.mint) == (renter, provider, setup.node.mint)
    assert state.channel_id == ANCHOR_TS_CHANNEL_ID
    assert state.deposit == DEPOSIT + TOP_UP and state.settled == 0
    # account.all() with a memcmp on the renter (other tests' channels have other renters)
    assert [c["address"] for c in seen["all"] if c["provider"] == str(provider)] == [str(channel)]
    assert {c["deposit"] for c in seen["all"] if c["address"] == str(channel)} == {
        str(DEPOSIT + TOP_UP)
    }
    assert seen["fetched"] == {
        "renter": str(renter),
        "channelId": str(ANCHOR_TS_CHANNEL_ID),
        "deposit": str(DEPOSIT + TOP_UP),
        "settled": "0",
        "expiry": str(setup.expiry),
    }
    assert seen["configMints"] == [str(setup.node.mint)]


def test_anchorpy_rpc_opens_a_channel(setup: Setup) -> None:
    provider = Keypair().pubkey()
    channel_id = 7
    channel = channel_address(setup.renter.pubkey(), provider, channel_id)

    async def main() -> Signature:
        idl = Idl.from_json(idl_path().read_text())
        async with AsyncClient(setup.node.url, commitment=Confirmed) as client:
            program = Program(idl, PROGRAM_ID, Provider(client, Wallet(setup.renter)))
            accounts = {
                "renter": setup.renter.pubkey(),
                "provider": provider,
                "mint": setup.node.mint,
                "config": config_address(),
                "channel": channel,
                "vault": vault_address(channel),
                "renter_token": associated_token_address(setup.renter.pubkey(), setup.node.mint),
                "token_program": TOKEN_PROGRAM_ID,
                "system_program": SYSTEM_PROGRAM_ID,
            }
            sig: Signature = await program.rpc["open_channel"](
                channel_id, DEPOSIT, setup.expiry, 10_000, 86_400 * 30,
                ctx=Context(accounts=accounts),
            )  # fmt: skip
            return sig

    signature = anyio.run(main)
    (status,) = statuses(setup.node, str(signature))
    assert status is not None and status.err is None
    state = anyio.run(read_channel, setup.node, channel)
    assert state.channel_id == channel_id and state.deposit == DEPOSIT
    assert state.provider == provider


def test_converted_idl_has_the_programs_discriminators() -> None:
    legacy = json.loads(idl_path().read_text())
    spec = anchor_spec(legacy)
    assert spec["address"] == str(PROGRAM_ID) and spec["metadata"]["spec"] == "0.1.0"
    coder = Coder(Idl.from_json(idl_path().read_text()))
    for ix in spec["instructions"]:
        assert bytes(ix["discriminator"]) == coder.instruction.sighashes[ix["name"]]
    for account in spec["accounts"]:
        assert (
            bytes(account["discriminator"])
            == coder.accounts.acc_name_to_discriminator[account["name"]]
        )
    open_ix = next(ix for ix in spec["instructions"] if ix["name"] == "open_channel")
    metas = {m["name"]: m for m in open_ix["accounts"]}
    assert metas["renter"] == {"name": "renter", "writable": True, "signer": True, **_docs(metas)}
    assert metas["token_program"]["address"] == str(TOKEN_PROGRAM_ID)
    assert metas["channel"]["pda"]["seeds"][0] == {"kind": "const", "value": list(b"channel")}
    assert metas["channel"]["pda"]["seeds"][3] == {"kind": "arg", "path": "channel_id"}
    types = {t["name"]: t for t in spec["types"]}
    assert types["Channel"]["type"]["fields"][0] == {"name": "renter", "type": "pubkey"}
    assert discriminator("account", "Channel") == list(
        coder.accounts.acc_name_to_discriminator["Channel"]
    )


def _docs(metas: dict[str, Any]) -> dict[str, Any]:
    return {"docs": metas["renter"]["docs"]} if "docs" in metas["renter"] else {}


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"metadata": {"address": "x"}, "name": "n", "version": "1", "instructions": 3},
        {
            "metadata": {"address": "x"},
            "name": "n",
            "version": "1",
            "instructions": [{"name": "a", "accounts": [], "args": [{"name": "b", "type": 5}]}],
        },
        {"metadata": {"address": "x"}, "name": "n", "version": "1", "instructions": [],
         "events": [{"name": "E"}]},
    ],
)  # fmt: skip
def test_a_legacy_idl_it_cannot_carry_is_refused_in_words(broken: dict[str, Any]) -> None:
    with pytest.raises(IdlConversionError):
        anchor_spec(broken)
