"""RpcChain at the edges: unreachable nodes, answers that are not JSON-RPC, oversized
answers, transactions that never confirm."""

from __future__ import annotations

import socket

import pytest
from dgpu.contracts_client.chain import ChainUnavailable, ConfirmationTimeout, RpcChain, RpcError
from solders.hash import Hash
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from tests.contracts_client.support import SOL, Node


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_node() -> None:
    async with RpcChain(f"http://127.0.0.1:{_closed_port()}") as chain:
        with pytest.raises(ChainUnavailable, match="ConnectError"):
            await chain.get_slot()


async def test_answer_that_is_not_jsonrpc(node: Node) -> None:
    async with RpcChain(f"{node.url}/health") as chain:  # GET-only route: 405 text
        with pytest.raises(ChainUnavailable, match="not JSON"):
            await chain.get_balance(Keypair().pubkey())


async def test_oversized_answer_is_cut(node: Node) -> None:
    async with RpcChain(node.url, max_response_bytes=200) as chain:
        with pytest.raises(ChainUnavailable, match="larger than 200 bytes"):
            await chain.get_multiple_accounts([node.mint] * 20)


async def test_rpc_error_objects_are_typed(node: Node) -> None:
    async with RpcChain(node.url) as chain:
        with pytest.raises(RpcError) as caught:
            await chain.minimum_balance_for_rent_exemption(2**40)
        assert caught.value.code == -32602


async def test_dropped_transaction_times_out(node: Node) -> None:
    """Without preflight, a transaction with an unknown blockhash is dropped by the node,
    as by a cluster; confirmation gives up after its timeout."""
    async with RpcChain(node.url, skip_preflight=True, confirm_timeout=0.3) as chain:
        payer = Keypair()
        await chain.request_airdrop(payer.pubkey(), SOL)
        ix = transfer(
            TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1)
        )
        tx = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], Hash.new_unique())
        with pytest.raises(ConfirmationTimeout) as caught:
            await chain.send_transaction(tx)
        assert caught.value.signature == tx.signatures[0]


async def test_borrowed_http_client_is_left_open(node: Node) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        async with RpcChain(node.url, http) as chain:
            assert await chain.get_slot() >= 1
        assert not http.is_closed
