"""``base64+zstd`` account data wherever a validator serves it: getAccountInfo,
getMultipleAccounts, getProgramAccounts, simulateTransaction's ``accounts``, and the
accountSubscribe/programSubscribe notifications, decoded by solana-py/solders (unmodified)
and checked byte for byte against the plain base64 answer."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import zstandard
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.pda import associated_token_address
from dgpu.protocol.keyfile import load_identity
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.types import MemcmpOpts
from solana.rpc.websocket_api import connect
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.responses import AccountNotification, ProgramNotification
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from spl.token.constants import TOKEN_PROGRAM_ID

from tests.contracts_client.support import SOL, Node, serve_node

TIMEOUT = 30.0
ZSTD = "base64+zstd"


@pytest.fixture(scope="module")
def zstd_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serve_node(tmp_path_factory.mktemp("zstd-node")) as node:
        yield node


def raw(node: Node, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(node.url, json=body, timeout=TIMEOUT).json()
    assert "result" in answer, answer
    return answer["result"]


def plain(node: Node, address: Pubkey) -> bytes:
    value = raw(node, "getAccountInfo", str(address), {"encoding": "base64"})["value"]
    return base64.b64decode(value["data"][0])


def test_http_reads_decode_in_solana_py(zstd_node: Node) -> None:
    node = zstd_node
    mint_bytes = plain(node, node.mint)
    assert len(mint_bytes) == 82

    # the wire form is a real zstd frame of the data (after dataSlice)
    value = raw(node, "getAccountInfo", str(node.mint), {"encoding": ZSTD})["value"]
    assert value["data"][1] == ZSTD
    assert zstandard.ZstdDecompressor().decompress(base64.b64decode(value["data"][0])) == (
        mint_bytes
    )
    sliced = raw(
        node,
        "getAccountInfo",
        str(node.mint),
        {"encoding": ZSTD, "dataSlice": {"offset": 36, "length": 9}},
    )["value"]
    assert (
        zstandard.ZstdDecompressor().decompress(base64.b64decode(sliced["data"][0]))
        == (mint_bytes[36:45])
    )

    async def main() -> None:
        async with AsyncClient(node.url, commitment=Confirmed) as client:
            one = (await client.get_account_info(node.mint, encoding=ZSTD)).value
            assert one is not None and bytes(one.data) == mint_bytes
            many = (
                await client.get_multiple_accounts([node.mint, TOKEN_PROGRAM_ID], encoding=ZSTD)
            ).value
            assert many[0] is not None and bytes(many[0].data) == mint_bytes
            assert many[1] is not None and bytes(many[1].data) == plain(node, TOKEN_PROGRAM_ID)
            mints = (
                await client.get_program_accounts(
                    TOKEN_PROGRAM_ID,
                    encoding=ZSTD,
                    filters=[82, MemcmpOpts(offset=4, bytes=str(Pubkey(mint_bytes[4:36])))],
                )
            ).value
            assert [(a.pubkey, bytes(a.account.data)) for a in mints] == [(node.mint, mint_bytes)]

    anyio.run(main)


def test_simulation_accounts_in_zstd(zstd_node: Node) -> None:
    node = zstd_node
    payer = Keypair()
    raw(node, "requestAirdrop", str(payer.pubkey()), SOL)
    blockhash = Hash.from_string(raw(node, "getLatestBlockhash")["value"]["blockhash"])
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=node.mint, lamports=1))
    tx = Transaction([payer], Message([ix], payer.pubkey()), blockhash)
    cfg = {"encoding": "base64", "accounts": {"addresses": [str(node.mint)], "encoding": ZSTD}}
    sim = raw(node, "simulateTransaction", base64.b64encode(bytes(tx)).decode(), cfg)["value"]
    assert sim["err"] is None
    (account,) = sim["accounts"]
    assert account["data"][1] == ZSTD
    data = zstandard.ZstdDecompressor().decompress(base64.b64decode(account["data"][0]))
    assert data == plain(node, node.mint)


def test_subscriptions_in_zstd(zstd_node: Node) -> None:
    node = zstd_node
    parts = urlsplit(node.url)
    assert parts.port is not None
    ws_url = f"ws://{parts.hostname}:{parts.port + 1}"  # where web3.js looks
    authority = load_identity(node.mint_authority_keyfile).to_solders()
    owner = Keypair().pubkey()
    token_account = associated_token_address(owner, node.mint)

    async def next_message(ws: Any) -> Any:
        async with asyncio.timeout(TIMEOUT):
            return (await ws.recv())[0]

    async def main() -> None:
        async with connect(ws_url) as ws:
            await ws.account_subscribe(token_account, encoding=ZSTD)
            await next_message(ws)
            await ws.program_subscribe(TOKEN_PROGRAM_ID, encoding=ZSTD, filters=[165])
            await next_message(ws)
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                mint = localnet.TokenMint(node.mint, authority)
                await localnet.fund_wallet(chain, owner, mint=mint, tokens=12_345)
            on_chain = plain(node, token_account)
            assert int.from_bytes(on_chain[64:72], "little") == 12_345
            seen: dict[type, list[bytes]] = {AccountNotification: [], ProgramNotification: []}
            while not all(on_chain in found for found in seen.values()):
                message = await next_message(ws)
                value = message.result.value
                account = value if isinstance(message, AccountNotification) else value.account
                seen[type(message)].append(bytes(account.data))

    asyncio.run(main())
