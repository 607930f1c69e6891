"""WebSocket PubSub of ``dgpu chain serve``: solana-py's own websocket client, unmodified,
on the port web3.js derives (RPC port + 1) and on the RPC port itself; and hostile
clients (garbage frames, 10⁴ subscriptions, a client that never reads) that leave the
server answering."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from dgpu.contracts_client.rpc_server.pubsub import MAX_SUBSCRIPTIONS
from solana.rpc.async_api import AsyncClient
from solana.rpc.websocket_api import connect
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.responses import (
    AccountNotification,
    LogsNotification,
    ProgramNotification,
    RootNotification,
    SignatureNotification,
    SlotNotification,
)
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.contracts_client.support import SOL, Node, serve_node

TIMEOUT = 30.0
REQUESTS = 10_000
AIRDROPS = 200


@pytest.fixture(scope="module")
def pubsub_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serve_node(tmp_path_factory.mktemp("pubsub-node")) as node:
        yield node


def ws_url(node: Node, same_port: bool = False) -> str:
    parts = urlsplit(node.url)
    assert parts.port is not None
    port = parts.port if same_port else parts.port + 1
    return f"ws://{parts.hostname}:{port}"


def rpc(node: Node, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(node.url, json=body, timeout=TIMEOUT).json()
    assert "result" in answer, answer
    return answer["result"]


async def _next(ws: Any) -> Any:
    async with asyncio.timeout(TIMEOUT):
        batch = await ws.recv()
    return batch[0]


@pytest.mark.parametrize("same_port", [False, True], ids=["port+1", "same-port"])
def test_solana_py_subscriptions(pubsub_node: Node, same_port: bool) -> None:
    node = pubsub_node

    async def main() -> None:
        payer, dest = Keypair(), Keypair().pubkey()
        async with AsyncClient(node.url) as http:
            await http.request_airdrop(payer.pubkey(), 10 * SOL)
            async with connect(ws_url(node, same_port)) as ws:
                await ws.account_subscribe(dest, encoding="base64")
                account_sub = (await _next(ws)).result
                await ws.logs_subscribe(RpcTransactionLogsFilterMentions(dest))
                logs_sub = (await _next(ws)).result
                await ws.program_subscribe(Pubkey.from_string("1" * 32), encoding="base64")
                program_sub = (await _next(ws)).result
                await ws.slot_subscribe()
                slot_sub = (await _next(ws)).result
                await ws.root_subscribe()
                root_sub = (await _next(ws)).result
                assert len({account_sub, logs_sub, program_sub, slot_sub, root_sub}) == 5

                blockhash = (await http.get_latest_blockhash()).value.blockhash
                ix = transfer(
                    TransferParams(from_pubkey=payer.pubkey(), to_pubkey=dest, lamports=SOL)
                )
                tx = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)
                await ws.signature_subscribe(tx.signatures[0])
                signature_sub = (await _next(ws)).result
                await http.send_raw_transaction(bytes(tx))

                seen: dict[type, Any] = {}
                for _ in range(7):  # program: payer and dest; one of each other kind
                    message = await _next(ws)
                    seen[type(message)] = message
                assert len(seen) == 6
                sig = seen[SignatureNotification]
                assert sig.subscription == signature_sub and sig.result.value.err is None
                acct = seen[AccountNotification]
                assert acct.subscription == account_sub
                assert acct.result.value.lamports == SOL
                logs = seen[LogsNotification]
                assert logs.result.value.signature == tx.signatures[0]
                assert any("invoke" in line for line in logs.result.value.logs)
                prog = seen[ProgramNotification]
                assert prog.result.value.pubkey in (payer.pubkey(), dest)
                slot = seen[SlotNotification].result.slot
                assert seen[RootNotification].result == slot == sig.result.context.slot

                # a signature that has already landed is answered at once
                await ws.signature_subscribe(tx.signatures[0])
                await _next(ws)  # the subscription id
                again = await _next(ws)
                assert isinstance(again, SignatureNotification)
                for unsub in (
                    ws.account_unsubscribe(account_sub),
                    ws.logs_unsubscribe(logs_sub),
                    ws.program_unsubscribe(program_sub),
                    ws.slot_unsubscribe(slot_sub),
                    ws.root_unsubscribe(root_sub),
                ):
                    await unsub
                    assert (await _next(ws)).result is True

    asyncio.run(main())


async def _raw(url: str, payload: str) -> Any:
    async with ws_connect(url) as ws:
        await ws.send(payload)
        async with asyncio.timeout(TIMEOUT):
            return json.loads(await ws.recv())


def test_garbage_frames_get_jsonrpc_errors(pubsub_node: Node) -> None:
    url = ws_url(pubsub_node)
    assert asyncio.run(_raw(url, "{not json"))["error"]["code"] == -32700
    assert asyncio.run(_raw(url, "[]"))["error"]["code"] == -32600
    bad = '{"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":["nope"]}'
    assert asyncio.run(_raw(url, bad))["error"]["code"] == -32602
    unknown = '{"jsonrpc":"2.0","id":2,"method":"fooSubscribe","params":[]}'
    assert asyncio.run(_raw(url, unknown))["error"]["code"] == -32601
    unsub = '{"jsonrpc":"2.0","id":3,"method":"slotUnsubscribe","params":[424242]}'
    assert asyncio.run(_raw(url, unsub))["error"]["code"] == -32602
    assert rpc(pubsub_node, "getHealth") == "ok"


async def _read_until_closed(ws: Any, into: list[Any]) -> None:
    async with asyncio.timeout(TIMEOUT * 2):
        while True:
            into.append(json.loads(await ws.recv()))


def test_subscriptions_past_the_limit_are_refused(pubsub_node: Node) -> None:
    """A client that reads its answers gets MAX_SUBSCRIPTIONS ids, then -32602 refusals, and
    keeps its connection and its subscriptions."""

    async def main() -> None:
        async with ws_connect(ws_url(pubsub_node), max_queue=None) as ws:
            extra = 3
            for i in range(MAX_SUBSCRIPTIONS + extra):
                await ws.send(f'{{"jsonrpc":"2.0","id":{i},"method":"slotSubscribe"}}')
            answers: dict[int, Any] = {}
            async with asyncio.timeout(TIMEOUT * 2):
                while len(answers) < MAX_SUBSCRIPTIONS + extra:
                    message = json.loads(await ws.recv())
                    if "id" in message:
                        answers[message["id"]] = message
            granted = [i for i, a in answers.items() if "result" in a]
            refused = [a for a in answers.values() if "error" in a]
            assert len(granted) == MAX_SUBSCRIPTIONS
            assert len(refused) == extra
            assert all(a["error"]["code"] == -32602 for a in refused)
            assert all("subscriptions" in a["error"]["message"] for a in refused)

    asyncio.run(main())


@pytest.mark.slow
def test_a_client_that_never_reads_is_dropped(pubsub_node: Node) -> None:
    """10⁴ subscription requests never read: past MAX_SUBSCRIPTIONS they are refused, and
    when the send queue fills the server closes the socket (1008); the node keeps going."""
    node = pubsub_node

    async def main() -> None:
        host, port = urlsplit(node.url).hostname, urlsplit(node.url).port
        assert host is not None and port is not None
        sock = socket.create_connection((host, port + 1))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        async with ws_connect(ws_url(node), sock=sock, max_queue=None) as hostile:
            for i in range(REQUESTS):
                await hostile.send(f'{{"jsonrpc":"2.0","id":{i},"method":"slotSubscribe"}}')
            payer = Keypair()
            # each transaction now owes the hostile client MAX_SUBSCRIPTIONS notifications,
            # far more than the socket buffers hold: the client does not read meanwhile
            with httpx.Client(timeout=TIMEOUT) as http:
                for _ in range(AIRDROPS):
                    body = {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "requestAirdrop",
                        "params": [str(payer.pubkey()), SOL],
                    }
                    # blocking on purpose: this client must not read meanwhile
                    answer = http.post(node.url, json=body)  # noqa: ASYNC212
                    assert "result" in answer.json()
            answers: list[Any] = []
            with pytest.raises(ConnectionClosed):
                await _read_until_closed(hostile, answers)
            # dropped, not buffered: far fewer messages than it had coming
            assert len(answers) < REQUESTS + AIRDROPS * MAX_SUBSCRIPTIONS
            ids = [a["result"] for a in answers if "id" in a and "result" in a]
            refused = [a for a in answers if "error" in a]
            # how many answers got out before the cut depends on scheduling: the refusals
            # themselves are checked by a client that reads (the test below)
            assert len(ids) <= MAX_SUBSCRIPTIONS
            assert all(a["error"]["code"] == -32602 for a in refused)
        assert rpc(node, "getHealth") == "ok"
        # and a well-behaved client is served as before
        async with connect(ws_url(node)) as ws:
            await ws.slot_subscribe()
            assert isinstance((await _next(ws)).result, int)
            rpc(node, "requestAirdrop", str(Keypair().pubkey()), SOL)
            assert isinstance(await _next(ws), SlotNotification)

    asyncio.run(main())
