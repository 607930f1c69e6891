"""``kill -9`` of ``dgpu chain serve`` during a settlement and between two jobs, with real
processes: the chain (``--state-dir``), the provider settling its own receipts with
``dgpu provider settle`` (its node store holding receipts its renters signed), and between
them an HTTP relay in this process that decides when the chain dies:

- ``answer-lost``: the settle transaction reached the chain, which committed it; the chain
  is killed before its answer goes back, so the provider never reads the confirmation;
- ``request-lost``: the chain is killed while the settle transaction is on its way in.

Then the chain restarts on the same port and state dir, the provider runs ``settle``
again, a second job (a new channel and receipt) is settled, the chain is killed once more
between the two jobs and restarted. Balances, channels, the store's settlement records and
each channel's history must equal those of the same story told without any kill, and every
receipt is paid exactly once: the amount on chain equals the signed receipt, never twice."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.pda import vault_address
from dgpu.node.provider.settlement import IN_FLIGHT
from dgpu.node.store import NodeStore
from dgpu.protocol.keyfile import load_identity, save_identity
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from tests.contracts_client.support import Node, serve_node
from tests.coordinator.escrow_world import DGPU, World, make_world, net_of

pytestmark = pytest.mark.slow

DEPOSIT = 10 * DGPU
FIRST_JOB = 1_234_567_891  # the renter's signed cumulative receipt, base units
SECOND_JOB = 987_654_321


class Relay(ThreadingHTTPServer):
    """Forwards JSON-RPC POSTs to the chain; with ``mode`` set, kills the chain (SIGKILL)
    at the first escrow transaction: after the chain answered it (``answer-lost``: the
    answer is dropped) or before forwarding it (``request-lost``). While the chain is down
    every request gets its connection closed, as from a dead host."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RelayHandler)
        self.target = ""
        self.node: Node | None = None
        self.mode: str | None = None
        self.killed = threading.Event()
        self.lost_answer: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RelayHandler(BaseHTTPRequestHandler):
    server: Relay

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        relay = self.server
        trigger = relay.mode is not None and not relay.killed.is_set() and _escrow_send(body)
        if (
            relay.killed.is_set()
            and relay.node is not None
            and relay.node.process.poll() is not None
        ):
            self.close_connection = True  # the chain is down: a dead host
            return
        if trigger and relay.mode == "request-lost":
            _kill(relay)
            self.close_connection = True
            return
        try:
            answer = httpx.post(
                relay.target, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError:
            self.close_connection = True
            return
        if trigger:  # answer-lost: the chain committed it, the provider never hears so
            relay.lost_answer = answer.json()
            _kill(relay)
            self.close_connection = True
            return
        self.send_response(answer.status_code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


def _escrow_send(body: bytes) -> bool:
    try:
        request = json.loads(body)
        if not isinstance(request, dict) or request.get("method") != "sendTransaction":
            return False
        tx = VersionedTransaction.from_bytes(base64.b64decode(request["params"][0]))
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    return PROGRAM_ID in tx.message.account_keys


def _kill(relay: Relay) -> None:
    assert relay.node is not None
    relay.node.process.kill()
    relay.node.process.wait()
    relay.killed.set()


@contextmanager
def relay_to() -> Iterator[Relay]:
    relay = Relay()
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join()


@dataclass
class Story:
    """One run: what the provider's command said and what the chain and store hold."""

    settle_runs: list[list[dict[str, Any]]] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)


def provider_settle(key: Path, data: Path, url: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", "provider", "settle",
         "--key", str(key), "--data-dir", str(data), "--rpc", url, "--json"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode != 0:
        return [{"exit": done.returncode, "error": done.stderr.strip().splitlines()[-1:]}]
    rows: list[dict[str, Any]] = json.loads(done.stdout)["settlements"]
    return rows


def rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(url, json=body, timeout=30).json()
    assert "result" in answer, answer
    return answer["result"]


def _snapshot(url: str, world: World, data: Path, channels: list[Pubkey]) -> dict[str, Any]:
    """Everything that must not depend on whether the chain was killed (keys and
    signatures differ between runs: amounts, states and counts are compared)."""

    def token(account: Pubkey) -> str:
        return str(rpc(url, "getTokenAccountBalance", str(account))["value"]["amount"])

    async def read() -> list[dict[str, Any]]:
        async with RpcChain(url, poll_interval=0.05) as chain:
            escrow = EscrowClient(chain)
            out = []
            for address in channels:
                state = await escrow.read_channel(address)
                out.append(
                    {
                        k: getattr(state, k)
                        for k in ("deposit", "settled", "paid", "fees", "open_nonce")
                    }
                )
            return out

    history = []
    for address in channels:
        signatures = rpc(url, "getSignaturesForAddress", str(address))
        kinds = []
        for entry in reversed(signatures):
            tx = rpc(url, "getTransaction", entry["signature"],
                     {"encoding": "json", "maxSupportedTransactionVersion": 0})  # fmt: skip
            logs = [line for line in tx["meta"]["logMessages"] if "Program log:" in line]
            kinds.append((entry["err"], logs))
        history.append(kinds)
    with NodeStore.open(data / "node.sqlite") as store:
        records = sorted((r.status, r.paid_on_chain, r.cumulative) for r in store.settlements())
        unsettled = len(store.unsettled_receipts())
    return {
        "provider_tokens": token(world.token_account(world.providers[0])),
        "renter_tokens": [token(world.token_account(r)) for r in world.renters],
        "vaults": [token(vault_address(c)) for c in channels],
        "channels": anyio.run(read),
        "history": history,
        "store": records,
        "unsettled": unsettled,
    }


def tell(tmp_path: Path, mode: str | None) -> Story:
    """Two jobs settled by the provider through the relay; with ``mode``, the chain is
    killed during the first settlement and again between the two jobs."""
    story = Story()
    state = tmp_path / "chain"
    data, key = tmp_path / "provider", tmp_path / "provider.json"
    with ExitStack() as stack:
        relay = stack.enter_context(relay_to())
        node = stack.enter_context(serve_node(state))
        port = urlsplit(node.url).port
        relay.target, relay.node = node.url, node
        authority = load_identity(node.mint_authority_keyfile).to_solders()

        async def build() -> tuple[World, list[Pubkey]]:
            chain = RpcChain(node.url, poll_interval=0.05)
            world = await make_world(
                chain, providers=1, renters=2, label="kill", authority=authority
            )
            first = await world.open(world.renters[0], world.providers[0], DEPOSIT)
            with NodeStore.open(data / "node.sqlite") as store:
                receipt = world.receipt(world.renters[0], first, FIRST_JOB)
                assert store.save_receipt("provider", receipt, now=1)
            await chain.aclose()
            return world, [first.address]

        data.mkdir()
        world, channels = anyio.run(build)
        save_identity(world.providers[0], key)

        relay.mode = mode
        story.settle_runs.append(provider_settle(key, data, relay.url))
        if mode is not None:
            assert relay.killed.is_set(), "the relay never saw the settle transaction"
            if mode == "answer-lost":
                assert relay.lost_answer is not None and "result" in relay.lost_answer
            node = stack.enter_context(serve_node(state, "--port", str(port)))
            relay.target, relay.node, relay.mode = node.url, node, None
            story.settle_runs.append(provider_settle(key, data, relay.url))
            # between two jobs: the first is settled, the second not yet opened
            node.process.kill()
            node.process.wait()
            node = stack.enter_context(serve_node(state, "--port", str(port)))
            relay.target, relay.node = node.url, node

        async def second_job() -> Pubkey:
            chain = RpcChain(node.url, poll_interval=0.05)
            world.chain, world.escrow = chain, EscrowClient(chain)
            opened = await world.open(world.renters[1], world.providers[0], DEPOSIT)
            with NodeStore.open(data / "node.sqlite") as store:
                receipt = world.receipt(world.renters[1], opened, SECOND_JOB)
                assert store.save_receipt("provider", receipt, now=2)
            await chain.aclose()
            return opened.address

        channels.append(anyio.run(second_job))
        story.settle_runs.append(provider_settle(key, data, relay.url))
        story.settle_runs.append(provider_settle(key, data, relay.url))  # nothing left
        story.snapshot = _snapshot(node.url, world, data, channels)
    return story


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return tell(tmp_path_factory.mktemp("no-kill"), None)


def test_the_story_without_a_kill_pays_each_receipt_once(reference: Story) -> None:
    snap = reference.snapshot
    assert [row["status"] for row in reference.settle_runs[0]] == ["settled"]
    assert reference.settle_runs[-1] == []  # nothing left to settle
    assert [c["settled"] for c in snap["channels"]] == [FIRST_JOB, SECOND_JOB]
    assert int(snap["provider_tokens"]) == net_of(FIRST_JOB) + net_of(SECOND_JOB)
    assert [len(h) for h in snap["history"]] == [2, 2]  # open, one settle
    assert snap["unsettled"] == 0


@pytest.mark.parametrize("mode", ["answer-lost", "request-lost"])
def test_kill_9_during_a_settlement_and_between_jobs(
    tmp_path: Path, mode: str, reference: Story
) -> None:
    story = tell(tmp_path, mode)
    # the first run could not learn the outcome: it says so, in words, no traceback
    assert [(r["status"], r["error"]) for r in story.settle_runs[0]] == [("failed", IN_FLIGHT)]
    # the run after the restart finds it paid (answer-lost) or sends it (request-lost)
    assert [r["status"] for r in story.settle_runs[1]] == ["settled"]
    assert story.snapshot == reference.snapshot
