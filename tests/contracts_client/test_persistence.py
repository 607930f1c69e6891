"""``dgpu chain serve --state-dir`` keeps its chain: ``kill -9`` between transactions and in
the middle of a stream of them, restart on the same directory, and every balance, channel,
signature and transaction is there again; a transaction from before the restart never
executes a second time; a damaged or foreign state directory is refused in words."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain, SvmLedger
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from tests.contracts_client.support import SOL, Node, funded, serve_node

DEPOSIT = 1_000_000_000


def rpc(node: Node, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(node.url, json=body, timeout=30).json()
    return answer


def result(node: Node, method: str, *params: Any) -> Any:
    answer = rpc(node, method, *params)
    assert "result" in answer, answer
    return answer["result"]


def kill9(node: Node) -> None:
    node.process.kill()
    node.process.wait()


def _snapshot(node: Node, accounts: list[Pubkey], signatures: list[str]) -> dict[str, Any]:
    infos = result(node, "getMultipleAccounts", [str(a) for a in accounts], {"encoding": "base64"})
    txs = [
        result(
            node, "getTransaction", s, {"encoding": "base64", "maxSupportedTransactionVersion": 0}
        )
        for s in signatures
    ]
    return {
        "accounts": infos["value"],
        "statuses": result(node, "getSignatureStatuses", signatures)["value"],
        "transactions": txs,
        "genesis": result(node, "getGenesisHash"),
    }


def test_kill9_between_transactions_keeps_everything(tmp_path: Path) -> None:
    state: dict[str, Any] = {}
    with serve_node(tmp_path) as node:
        authority = load_identity(node.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(node.mint, authority)

        async def build() -> None:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                escrow = EscrowClient(chain)
                admin, treasury = await funded(chain), Keypair()
                await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
                await escrow.initialize(
                    authority, admin=admin.pubkey(), treasury=treasury.pubkey(), mints=[node.mint]
                )
                renter_id = Identity.generate()
                renter, provider = renter_id.to_solders(), Keypair()
                await chain.request_airdrop(renter.pubkey(), SOL)
                renter_ata = await localnet.fund_wallet(
                    chain, renter.pubkey(), mint=mint, tokens=DEPOSIT
                )
                provider_ata = await localnet.fund_wallet(
                    chain, provider.pubkey(), lamports=SOL, mint=mint
                )
                assert renter_ata is not None and provider_ata is not None
                expiry = await chain.unix_time() + 3600
                opened = await escrow.open_channel(
                    renter,
                    provider=provider.pubkey(),
                    mint=mint.address,
                    deposit=DEPOSIT,
                    expiry=expiry,
                )
                channel = opened.state
                receipt = channel.receipt(DEPOSIT // 4, escrow.program_id)
                settlement = await escrow.settlement(
                    channel.address, DEPOSIT // 4, receipt.sign(renter_id)
                )
                settle_sig = await escrow.settle_batch(provider, [settlement])
                payer = await funded(chain, SOL)
                blockhash = await chain.latest_blockhash()
                ix = transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=provider.pubkey(), lamports=12345
                    )
                )
                old = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)
                sent = await chain.send_transaction(old)
                state.update(
                    accounts=[
                        renter.pubkey(),
                        provider.pubkey(),
                        payer.pubkey(),
                        renter_ata,
                        provider_ata,
                        channel.address,
                        channel.vault,
                        escrow.program_id,
                    ],
                    channel=channel.address,
                    signatures=[str(settle_sig), str(sent)],
                    old=bytes(old),
                    payer=payer.pubkey(),
                    provider=provider.pubkey(),
                )

        anyio.run(build, backend="trio")
        before = _snapshot(node, state["accounts"], state["signatures"])
        slot_before = result(node, "getSlot")
        time_before = result(node, "getBlockTime", slot_before)
        history_before = result(node, "getSignaturesForAddress", str(state["provider"]))
        kill9(node)

    with serve_node(tmp_path) as node:
        after = _snapshot(node, state["accounts"], state["signatures"])
        assert after == before
        assert after["accounts"][5] is not None  # the channel is there again
        assert result(node, "getSlot") >= slot_before
        assert result(node, "getBlockTime", slot_before) == time_before
        assert result(node, "getSignaturesForAddress", str(state["provider"])) == history_before
        # the transaction sent before the kill never executes again
        raw = state["old"]
        encoded = base64.b64encode(raw).decode()
        again = rpc(node, "sendTransaction", encoded, {"encoding": "base64"})
        assert "AlreadyProcessed" in json.dumps(again["error"]), again
        balance = result(node, "getBalance", str(state["payer"]))["value"]
        result(node, "sendTransaction", encoded, {"encoding": "base64", "skipPreflight": True})
        assert result(node, "getBalance", str(state["payer"]))["value"] == balance

        # and the restored chain goes on: the program runs, slots keep increasing
        async def more() -> None:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                escrow = EscrowClient(chain)
                channel = await escrow.read_channel(state["channel"])
                assert channel.deposit == DEPOSIT
                await funded(chain, SOL)

        anyio.run(more, backend="trio")
        assert result(node, "getSlot") > slot_before


def _send_transfers(node: Node, payer: Keypair, answered: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(10_000):
            if stop.is_set():
                return
            try:
                bh = client.post(
                    node.url, json={"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"}
                ).json()["result"]["value"]["blockhash"]
                ix = transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**6 + i
                    )
                )
                tx = Transaction.new_signed_with_payer(
                    [ix], payer.pubkey(), [payer], Hash.from_string(bh)
                )
                answer = client.post(
                    node.url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "sendTransaction",
                        "params": [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}],
                    },
                ).json()
            except (httpx.HTTPError, ValueError, KeyError):
                return  # the server died under us
            if "result" in answer:
                answered.append(answer["result"])


def test_kill9_during_a_stream_of_transactions(tmp_path: Path) -> None:
    with serve_node(tmp_path) as node:
        payer = Keypair()
        result(node, "requestAirdrop", str(payer.pubkey()), 1000 * SOL)
        answered: list[str] = []
        stop = threading.Event()
        sender = threading.Thread(target=_send_transfers, args=(node, payer, answered, stop))
        sender.start()
        while len(answered) < 30:
            sender.join(0.05)
            assert sender.is_alive()
        kill9(node)  # while the sender is in the middle of its loop
        stop.set()
        sender.join()
    with serve_node(tmp_path) as node:
        statuses = result(node, "getSignatureStatuses", answered[-200:])["value"]
        # every transaction the server answered for was committed before the answer
        assert all(s is not None and s["err"] is None for s in statuses)
        history = result(node, "getSignaturesForAddress", str(payer.pubkey()), {"limit": 1000})
        landed = len(history) - 1  # minus the airdrop
        assert landed >= len(answered)
        balance = result(node, "getBalance", str(payer.pubkey()))["value"]
        spent = sum(10**6 + i for i in range(landed)) + 5000 * landed
        assert balance == 1000 * SOL - spent


def _serve_fails(state_dir: Path) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgpu.cli.main",
            "chain",
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_corrupt_or_foreign_state_is_refused_in_words(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "ledger.sqlite").write_bytes(b"this is not a database at all" * 200)
    assert "not a readable ledger database" in _serve_fails(garbage)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "ledger.sqlite")
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    assert "belongs to something else" in _serve_fails(foreign)

    # a real ledger whose content was damaged: its head no longer parses
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    SvmLedger(path=damaged / "ledger.sqlite").close()
    db = sqlite3.connect(damaged / "ledger.sqlite")
    db.execute("UPDATE meta SET v='{\"slot\": \"x\"}' WHERE k='head'")
    db.commit()
    db.close()
    assert "the ledger is damaged" in _serve_fails(damaged)


def test_each_state_dir_is_its_own_chain(tmp_path: Path) -> None:
    with serve_node(tmp_path / "a") as a, serve_node(tmp_path / "b") as b:
        genesis_a = result(a, "getGenesisHash")
        assert genesis_a != result(b, "getGenesisHash")
        result(a, "dgpu_warp", 10_000)
        time_a = result(a, "getBlockTime", result(a, "getSlot"))
    with serve_node(tmp_path / "a") as a:
        assert result(a, "getGenesisHash") == genesis_a

        async def genesis() -> str:
            async with RpcChain(a.url) as chain:
                return str(await chain.genesis_hash())

        assert anyio.run(genesis) == genesis_a
        info = json.loads((tmp_path / "a" / "chain.json").read_text())
        assert info["genesis_hash"] == genesis_a and info["restored"] is True

        # the clock never goes back across a restart (it was warped 10,000 s ahead)
        async def now() -> int:
            async with RpcChain(a.url) as chain:
                return await chain.unix_time()

        assert anyio.run(now) >= time_a + 10_000
