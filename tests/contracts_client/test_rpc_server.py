"""The local JSON-RPC node at the HTTP level: hostile bodies get proper JSON-RPC error
objects, and standard clients (solana-py, solders) understand its answers."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import base58
import httpx
import pytest
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain, SvmLedger, TransactionFailed
from dgpu.contracts_client.chain.history import ui_amount_string
from dgpu.contracts_client.rpc_server import MAX_BATCH, MAX_BODY_BYTES, METHODS, handle_body
from dgpu.protocol.keyfile import load_identity
from hypothesis import given, settings
from hypothesis import strategies as st
from solana.rpc.api import Client
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.types import TxOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.rpc.responses import GetTransactionResp
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from tests.contracts_client.support import SOL, Node

PARSE, INVALID_REQUEST, NOT_FOUND, INVALID_PARAMS, INTERNAL = -32700, -32600, -32601, -32602, -32603


def post(node: Node, body: bytes | str, **headers: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(node.url, content=content, headers=headers, timeout=30)


def rpc(node: Node, method: str, params: list[Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        body["params"] = params
    response = post(node, json.dumps(body))
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == id_
    return answer


def error_code(answer: Any) -> int:
    assert isinstance(answer, dict) and "result" not in answer, answer
    assert isinstance(answer["error"]["message"], str)
    code: int = answer["error"]["code"]
    return code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", PARSE),
        (b"\xff\xfe\x00garbage", PARSE),
        (b"[" * 50_000 + b"]" * 50_000, PARSE),
        (b"1" * 10_000, PARSE),
        (b"", PARSE),
        (b"[]", INVALID_REQUEST),
        (b"42", INVALID_REQUEST),
        (b'"getSlot"', INVALID_REQUEST),
        (b'{"jsonrpc":"1.0","id":1,"method":"getSlot"}', INVALID_REQUEST),
        (b'{"id":1,"method":"getSlot"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":true,"method":"getSlot"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"getSlot"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"getSlot"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"noSuchMethod"}', NOT_FOUND),
        (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":{"pubkey":"x"}}', INVALID_PARAMS),
        (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":[]}', INVALID_PARAMS),
        (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["not-a-key"]}', INVALID_PARAMS),
        (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":[12]}', INVALID_PARAMS),
        (b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[1,2,3]}', INVALID_PARAMS),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"getMinimumBalanceForRentExemption","params":[-1]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"getMinimumBalanceForRentExemption",'
            b'"params":[99999999999999999999]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["!!",'
            b'{"encoding":"base64"}]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AAAA",'
            b'{"encoding":"base64"}]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AAAA",'
            b'{"encoding":"rot13"}]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["'
            + b"A" * 5000
            + b'",{"encoding":"base64"}]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"getSignatureStatuses","params":[["x"]]}',
            INVALID_PARAMS,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"requestAirdrop","params":'
            b'["11111111111111111111111111111111", true]}',
            INVALID_PARAMS,
        ),
    ],
)
def test_hostile_body_gets_a_jsonrpc_error(node: Node, body: bytes, code: int) -> None:
    response = post(node, body, **{"content-type": "application/json"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["jsonrpc"] == "2.0"
    assert error_code(answer) == code


def test_oversized_body_is_refused_before_parsing(node: Node) -> None:
    response = post(node, b'{"jsonrpc":"2.0","id":1,"method":"getSlot","x":"' + b"a" * 600_000)
    assert response.status_code == 413
    assert error_code(response.json()) == INVALID_REQUEST


def test_batch(node: Node) -> None:
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            {"jsonrpc": "2.0", "method": "getHealth"},  # a notification: not answered
            17,
        ]
    )
    answers = post(node, body).json()
    assert [a["id"] for a in answers] == ["a", 2, None]
    assert isinstance(answers[0]["result"], int)
    assert error_code(answers[1]) == NOT_FOUND
    assert error_code(answers[2]) == INVALID_REQUEST
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "getSlot"} for i in range(MAX_BATCH + 1)]
    assert error_code(post(node, json.dumps(too_many)).json()) == INVALID_REQUEST


def _huge_params() -> list[tuple[str, str, int]]:
    """(what, body, expected code): each just under the body limit, so it is parsed."""
    keys = [str(Keypair().pubkey()) for _ in range(200)]
    many_keys = json.dumps((keys * 50)[:10_000])  # 10⁴ keys, ~450 KB
    sigs = json.dumps(["1" * 88] * 5_000)
    deep = "[" * 100_000 + "]" * 100_000
    return [
        ("10⁴ accounts", f'{{"jsonrpc":"2.0","id":1,"method":"getMultipleAccounts",'
         f'"params":[{many_keys}]}}', INVALID_PARAMS),
        ("5·10³ signatures", f'{{"jsonrpc":"2.0","id":1,"method":"getSignatureStatuses",'
         f'"params":[{sigs}]}}', INVALID_PARAMS),
        ("400 KB string", '{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["'
         + "x" * 400_000 + '"]}', INVALID_PARAMS),
        ("10⁵-deep params", '{"jsonrpc":"2.0","id":1,"method":"getBalance","params":'
         + deep + "}", PARSE),
        ("10⁴ filters", '{"jsonrpc":"2.0","id":1,"method":"getProgramAccounts","params":'
         '["11111111111111111111111111111111",{"filters":'
         + json.dumps([{"dataSize": 1}] * 10_000) + "}]}", INVALID_PARAMS),
    ]  # fmt: skip


@pytest.mark.slow
def test_batches_of_ten_thousand_and_huge_params_leave_the_server_up(node: Node) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "getSlot"} for i in range(10_000)]
    body = json.dumps(batch, separators=(",", ":"))
    assert len(body) < MAX_BODY_BYTES  # read and parsed, then refused as a whole
    assert error_code(post(node, body).json()) == INVALID_REQUEST
    for what, huge, code in _huge_params():
        assert len(huge) < MAX_BODY_BYTES, what
        response = post(node, huge)
        assert response.status_code == 200, what
        assert error_code(response.json()) == code, what
    # 10⁴ requests that are each refused, in batches at the limit
    bad = [{"jsonrpc": "2.0", "id": i, "method": "nope"} for i in range(MAX_BATCH)]
    for _ in range(10_000 // MAX_BATCH):
        answers = post(node, json.dumps(bad)).json()
        assert len(answers) == MAX_BATCH and error_code(answers[-1]) == NOT_FOUND
    assert rpc(node, "getHealth")["result"] == "ok"
    assert node.process.poll() is None


def test_only_notifications_get_no_content(node: Node) -> None:
    response = post(node, '{"jsonrpc":"2.0","method":"getHealth"}')
    assert response.status_code == 204 and response.content == b""


def test_http_surface(node: Node) -> None:
    assert httpx.get(f"{node.url}/health", timeout=30).text == "ok"
    assert httpx.get(node.url, timeout=30).status_code == 405
    assert rpc(node, "getHealth")["result"] == "ok"
    version = rpc(node, "getVersion")["result"]
    assert version["solana-core"]
    assert isinstance(rpc(node, "getGenesisHash")["result"], str)


def test_string_ids_are_echoed(node: Node) -> None:
    answer = rpc(node, "getSlot", id_="b8c4-uuid-like")
    assert answer["result"] >= 1


def test_account_encodings(node: Node) -> None:
    mint = str(node.mint)
    b64 = rpc(node, "getAccountInfo", [mint, {"encoding": "base64"}])["result"]["value"]
    raw = base64.b64decode(b64["data"][0])
    assert len(raw) == 82 and b64["space"] == 82
    b58 = rpc(node, "getAccountInfo", [mint, {"encoding": "base58"}])["result"]["value"]
    assert b58["data"][1] == "base58"
    legacy = rpc(node, "getAccountInfo", [mint])["result"]["value"]
    assert isinstance(legacy["data"], str)
    sliced = rpc(
        node,
        "getAccountInfo",
        [mint, {"encoding": "base64", "dataSlice": {"offset": 44, "length": 1}}],
    )["result"]["value"]
    assert base64.b64decode(sliced["data"][0]) == bytes([9])  # decimals
    token_program = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
    large = rpc(node, "getAccountInfo", [token_program, {"encoding": "base64"}])["result"]
    assert large["value"]["space"] > 128
    assert error_code(rpc(node, "getAccountInfo", [token_program, {"encoding": "base58"}])) == (
        INVALID_PARAMS
    )
    zstd = rpc(node, "getAccountInfo", [mint, {"encoding": "base64+zstd"}])["result"]["value"]
    assert zstd["data"][1] == "base64+zstd"  # decoded by solana-py in test_zstd.py


def test_block_time_and_blockhash_validity(node: Node) -> None:
    slot = rpc(node, "getSlot")["result"]
    assert isinstance(rpc(node, "getBlockTime", [slot])["result"], int)
    assert error_code(rpc(node, "getBlockTime", [slot + 10_000_000])) == -32004
    latest = rpc(node, "getLatestBlockhash")["result"]["value"]["blockhash"]
    assert rpc(node, "isBlockhashValid", [latest])["result"]["value"] is True
    stale = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM"
    assert rpc(node, "isBlockhashValid", [stale])["result"]["value"] is False


def _signed_transfer(node: Node, payer: Keypair, lamports: int) -> Transaction:
    blockhash = rpc(node, "getLatestBlockhash")["result"]["value"]["blockhash"]
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports)
    )
    msg = Message.new_with_blockhash([ix], payer.pubkey(), Hash.from_string(blockhash))
    return Transaction([payer], msg, Hash.from_string(blockhash))


def test_send_base58_and_read_back_the_transaction(node: Node) -> None:
    payer = Keypair()
    rpc(node, "requestAirdrop", [str(payer.pubkey()), SOL])
    tx = _signed_transfer(node, payer, 1234)
    encoded = base58.b58encode(bytes(tx)).decode()
    answer = rpc(node, "sendTransaction", [encoded])  # base58 is the default encoding
    assert answer["result"] == str(tx.signatures[0])
    statuses = rpc(node, "getSignatureStatuses", [[answer["result"]]])["result"]["value"]
    assert statuses[0]["confirmationStatus"] == "finalized" and statuses[0]["err"] is None
    got = post(
        node,
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "getTransaction",
                "params": [answer["result"], {"encoding": "base64"}],
            }
        ),
    )
    parsed = GetTransactionResp.from_json(got.text)
    assert isinstance(parsed, GetTransactionResp)
    assert parsed.value is not None and parsed.value.transaction.meta is not None
    assert parsed.value.transaction.meta.fee == 5000
    assert parsed.value.transaction.meta.log_messages


def test_simulate_options(node: Node) -> None:
    payer = Keypair()
    rpc(node, "requestAirdrop", [str(payer.pubkey()), SOL])
    tx = _signed_transfer(node, payer, 5)
    encoded = base64.b64encode(bytes(tx)).decode()
    value = rpc(
        node,
        "simulateTransaction",
        [
            encoded,
            {
                "encoding": "base64",
                "replaceRecentBlockhash": True,
                "accounts": {"addresses": [str(payer.pubkey())], "encoding": "base64"},
            },
        ],
    )["result"]["value"]
    assert value["err"] is None and value["unitsConsumed"] > 0
    assert value["accounts"][0]["lamports"] == SOL - 5 - 5000
    assert value["replacementBlockhash"]["blockhash"]
    both = rpc(
        node,
        "simulateTransaction",
        [encoded, {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True}],
    )
    assert error_code(both) == INVALID_PARAMS


def test_warp_extension_moves_the_clock(node: Node) -> None:
    async def scenario() -> tuple[int, int]:
        async with RpcChain(node.url) as chain:
            before = await chain.unix_time()
            rpc(node, "dgpu_warp", [3600])
            return before, await chain.unix_time()

    before, after = asyncio.run(scenario())
    assert after >= before + 3600


async def test_skip_preflight_failure_reads_logs_back(node: Node) -> None:
    async with RpcChain(node.url, skip_preflight=True, poll_interval=0.05) as chain:
        payer = Keypair()
        await chain.request_airdrop(payer.pubkey(), SOL)
        with pytest.raises(TransactionFailed) as caught:
            await localnet.transfer_sol(chain, payer, Keypair().pubkey(), 5 * SOL)
        failure = caught.value
        assert failure.landed and failure.custom_code == 1
        assert any("insufficient lamports" in line for line in failure.logs)
        assert await chain.get_balance(payer.pubkey()) == SOL - 5000  # the fee was paid


def test_solana_py_sync_client(node: Node) -> None:
    client = Client(node.url, commitment=Confirmed)
    payer = Keypair()
    client.request_airdrop(payer.pubkey(), SOL)
    assert client.get_balance(payer.pubkey()).value == SOL
    blockhash = client.get_latest_blockhash().value.blockhash
    dest = Keypair().pubkey()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=dest, lamports=99))
    tx = Transaction(
        [payer], Message.new_with_blockhash([ix], payer.pubkey(), blockhash), blockhash
    )
    sig = client.send_transaction(tx, opts=TxOpts(preflight_commitment=Confirmed)).value
    client.confirm_transaction(sig, Confirmed, sleep_seconds=0.05)
    assert client.get_balance(dest).value == 99
    assert client.get_minimum_balance_for_rent_exemption(0).value == 890_880
    assert client.is_connected()
    epoch = client.get_epoch_info().value
    assert epoch.absolute_slot == client.get_slot().value


def test_solana_py_async_client(node: Node) -> None:
    """solana-py's asyncio client reads a token account made by the node's mint authority
    (loaded from the state dir, as the devnet does)."""
    authority = load_identity(node.mint_authority_keyfile).to_solders()
    mint = localnet.TokenMint(node.mint, authority)

    async def scenario() -> tuple[int, str]:
        async with RpcChain(node.url) as chain:
            ata = await localnet.fund_wallet(chain, Keypair().pubkey(), mint=mint, tokens=3)
        assert ata is not None
        client = AsyncClient(node.url, commitment=Confirmed)
        try:
            value = (await client.get_token_account_balance(ata)).value
        finally:
            await client.close()
        return value.decimals, value.amount

    assert asyncio.run(scenario()) == (9, "3")


_LEDGER = SvmLedger()  # a bare ledger: the fuzz needs no program

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    method = draw(st.sampled_from(sorted(METHODS)) | st.text(max_size=12))
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if draw(st.booleans()):
        request["id"] = draw(st.integers(0, 10**6) | st.text(max_size=8))
    if draw(st.booleans()):
        request["params"] = draw(st.lists(json_values, max_size=4) | json_values)
    return request


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(requests(), st.lists(requests(), min_size=1, max_size=5), json_values))
def test_no_body_makes_an_internal_error(body: Any) -> None:
    """Whatever JSON arrives, the answer is a result or a client-side error, never -32603."""
    answers = handle_body(_LEDGER, json.dumps(body).encode())
    for answer in answers if isinstance(answers, list) else [answers]:
        if answer is None:
            continue
        assert answer["jsonrpc"] == "2.0"
        if "error" in answer:
            assert answer["error"]["code"] != INTERNAL, answer
            assert answer["error"]["code"] in (
                PARSE,
                INVALID_REQUEST,
                NOT_FOUND,
                INVALID_PARAMS,
                -32004,  # block not available
                -32007,  # slot skipped (a future slot)
                -32008,  # no snapshot
                -32015,  # transaction version unsupported
                -32016,  # minimum context slot not reached
            )


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_get_an_answer(body: bytes) -> None:
    answer = handle_body(_LEDGER, body)
    answers = answer if isinstance(answer, list) else [answer]
    for one in answers:
        if one is not None and "error" in one:
            assert one["error"]["code"] != INTERNAL


@given(amount=st.integers(0, 2**64 - 1), decimals=st.integers(0, 12))
def test_ui_amount_string_is_exact(amount: int, decimals: int) -> None:
    text = ui_amount_string(amount, decimals)
    assert Decimal(text) == Decimal(amount) / Decimal(10) ** decimals
    assert "e" not in text.lower() and not text.endswith(".")
