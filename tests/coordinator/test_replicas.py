"""Several coordinator replicas (real ``dgpu coordinator serve`` processes) on one real
PostgreSQL database: shared offers, replay protection and rate limits; one settler at a
time, and a settler killed with SIGKILL mid-round replaced without paying anything twice;
the database restarted under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.protocol.codec import encode
from dgpu.protocol.http_auth import sign_request
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity

from tests.contracts_client.support import Node, serve_node
from tests.coordinator.conftest import offer_for
from tests.coordinator.escrow_world import DGPU, make_world, net_of
from tests.coordinator.pg import Cluster, running_cluster

pytestmark = pytest.mark.slow
DGPU_BIN = Path(sys.executable).parent / "dgpu"
MSGPACK = {"Content-Type": "application/msgpack"}


@contextmanager
def replica(db: str, name: str, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """One ``dgpu coordinator serve`` process on ``db``; (url, process)."""
    proc = subprocess.Popen(
        [
            *(str(DGPU_BIN), "coordinator", "serve", "--listen", "127.0.0.1:0", "--db", db),
            *("--replica-id", name, "--json", "--no-probe", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        url = json.loads(line)["url"]
        with httpx.Client(timeout=60) as http:  # the socket listens: waits for startup
            assert http.get(f"{url}/healthz").status_code == 200
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


async def test_two_replicas_share_offers_replays_and_limits(pg_cluster: Cluster) -> None:
    db = pg_cluster.new_database("replicas")
    limits = ["--key-rate", "0.001", "--key-burst", "3"]
    with replica(db, "a", *limits) as (url_a, _), replica(db, "b", *limits) as (url_b, _):
        provider = Identity.from_label("replica-provider")
        now = int(time.time())
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=30) as a,
            httpx.AsyncClient(base_url=url_b, timeout=30) as b,
        ):
            # An offer posted to one replica is found on the other.
            body = encode(offer_for(provider, now=now, region="replicated"))
            headers = sign_request(provider, "POST", "/api/v1/offers", body, timestamp=now)
            first = await a.post("/api/v1/offers", content=body, headers=headers | MSGPACK)
            assert first.json()["status"] == "created", first.text
            found = await CoordinatorClient(b, None).search_offers(region="replicated")
            assert [o.offer.provider for o in found.offers] == [provider.public_key]

            # The same signed request replayed to the other replica is refused there.
            replay = await b.post("/api/v1/offers", content=body, headers=headers | MSGPACK)
            assert replay.status_code == 401
            assert replay.json()["error"]["code"] == "replayed"

            # One allowance for the signer across both replicas: burst 3 in all (the
            # replay was refused before its signer was charged). Alone, neither replica
            # would have refused: each sees two of the four requests.
            statuses = []
            for http in (b, a, b):
                more = encode(offer_for(provider, now=now, region="replicated"))
                signed = sign_request(provider, "POST", "/api/v1/offers", more, timestamp=now)
                response = await http.post("/api/v1/offers", content=more, headers=signed | MSGPACK)
                statuses.append(response.status_code)
            assert statuses == [201, 201, 429], statuses
            assert response.json()["error"]["code"] == "rate_limited"
            assert "Retry-After" in response.headers

            health = [(await c.get("/healthz")).json() for c in (a, b)]
            assert [h["replica"] for h in health] == ["a", "b"]
            assert all(h["database"] == "postgresql" for h in health)
            assert all(h["settler"] is None for h in health)  # no chain: nobody settles


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serve_node(tmp_path_factory.mktemp("replica-node")) as running:
        yield running


async def _health(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        doc: dict[str, Any] = (await http.get(f"{url}/healthz")).json()
        return doc


async def _stopped_and_quiet(cluster: Cluster, db: str, proc: subprocess.Popen[str]) -> list[int]:
    """SIGSTOP the replica, wait until none of the database's sessions runs a statement
    (what the stopped process had sent has landed), and return the open batches."""
    os.kill(proc.pid, signal.SIGSTOP)

    def busy() -> list[str]:
        # A session waiting on its (stopped) client for the rest of a request is quiet.
        return cluster.query(
            db,
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state = 'active'"
            " AND wait_event_type IS DISTINCT FROM 'Client'",
        )

    with trio.fail_after(30):
        while True:
            if not await trio.to_thread.run_sync(busy):
                break
            await trio.sleep(0.01)
    rows = await trio.to_thread.run_sync(
        cluster.query,
        db,
        "SELECT id FROM batches WHERE state IN ('pending', 'submitted') ORDER BY id",
    )
    return [int(r) for r in rows]


async def test_a_killed_settler_is_replaced_and_nothing_is_paid_twice(
    pg_cluster: Cluster, node: Node, tmp_path: Path
) -> None:
    authority = load_identity(node.mint_authority_keyfile).to_solders()
    mint = localnet.TokenMint(node.mint, authority)
    db = pg_cluster.new_database("failover")
    async with RpcChain(node.url, poll_interval=0.05) as chain:
        world = await make_world(
            chain, providers=3, renters=1, label="failover", mint=mint, authority=authority
        )
        key = tmp_path / "settler.json"
        save_identity(world.settler, key)
        renter = world.renters[0]
        channels = [
            (provider, await world.open(renter, provider, deposit=DGPU))
            for provider in world.providers
            for _ in range(6)
        ]
        lease_s = 3.0
        chain_args = ["--rpc", node.url, "--key", str(key), "--poll-interval", "0.05"]
        with ExitStack() as stack:
            url_a, proc_a = stack.enter_context(
                replica(db, "first", *chain_args, "--settle-every", "0.5", "--settler-lease", "3")
            )
            url_b, _ = stack.enter_context(
                replica(db, "second", *chain_args, "--settle-every", "0.5", "--settler-lease", "3")
            )
            assert (await _health(url_a))["settling"] is True  # it started first
            assert (await _health(url_b))["settler"] == "first"

            # Receipts go to the replica that does not settle; the settler picks them up.
            async with httpx.AsyncClient(base_url=url_b, timeout=60) as http:
                for k, (provider, channel) in enumerate(channels):
                    posted = await CoordinatorClient(http, provider).post_receipt(
                        world.receipt(renter, channel, (k + 1) * 1_000_000)
                    )
                    assert posted["status"] == "created"

            # Freeze the settler while a batch of its is in flight, then kill it.
            in_flight: list[int] = []
            with trio.fail_after(60):
                while not in_flight:
                    in_flight = await _stopped_and_quiet(pg_cluster, db, proc_a)
                    if not in_flight:
                        os.kill(proc_a.pid, signal.SIGCONT)
                        await trio.sleep(0.005)
            os.kill(proc_a.pid, signal.SIGKILL)
            proc_a.wait(30)
            killed_at = trio.current_time()

            # The survivor takes the lease over within its term (plus a renewal interval)
            # and finishes the work, reconciling the dead settler's batch from the chain.
            with trio.fail_after(60):
                while True:
                    if (await _health(url_b))["settling"]:
                        break
                    await trio.sleep(0.1)
            takeover_s = trio.current_time() - killed_at
            assert takeover_s < lease_s + lease_s / 3 + 5, takeover_s  # bounded, not timed
            async with httpx.AsyncClient(base_url=url_b, timeout=30) as http:
                with trio.fail_after(90):
                    while True:
                        page = (await http.get("/api/v1/settlements", params={"limit": 200})).json()
                        if page["pending_channels"] == 0:
                            break
                        await trio.sleep(0.2)
        states = {b["id"]: b["state"] for b in page["batches"]}
        assert all(states[i] in ("reconciled", "failed") for i in in_flight), (in_flight, page)
        assert not {"pending", "submitted"} & set(states.values())
        owed = {p.address: 0 for p in world.providers}
        for k, (provider, _) in enumerate(channels):
            owed[provider.address] += net_of((k + 1) * 1_000_000)
        for provider in world.providers:  # each receipt paid exactly once
            assert await world.balance(provider) == owed[provider.address]
        assert page["settled_total"] == sum((k + 1) * 1_000_000 for k in range(len(channels)))


async def test_a_database_restart_under_load_is_503_in_words_then_recovers() -> None:
    root = Path(tempfile.mkdtemp(prefix="dgpu-pg-restart-"))
    with running_cluster(root) as cluster:
        db = cluster.new_database("restart")
        with replica(db, "alone") as (url, proc):
            seen: dict[int, int] = {}
            unavailable: list[dict[str, Any]] = []
            stop = trio.Event()

            async def load(http: httpx.AsyncClient) -> None:
                with trio.fail_after(120):
                    while not stop.is_set():
                        response = await http.get("/api/v1/offers")
                        seen[response.status_code] = seen.get(response.status_code, 0) + 1
                        if response.status_code == 503:
                            unavailable.append(response.json())
                        await trio.sleep(0.01)

            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(load, http)
                    await trio.to_thread.run_sync(cluster.stop, "fast")
                    with trio.fail_after(60):
                        while True:
                            if unavailable:
                                break
                            await trio.sleep(0.05)
                    await trio.to_thread.run_sync(cluster.start)
                    # Recovers by itself: the same process answers 200 again.
                    with trio.fail_after(60):
                        while True:
                            if (await http.get("/api/v1/offers")).status_code == 200:
                                break
                            await trio.sleep(0.1)
                    stop.set()
                health = (await http.get("/healthz")).json()
            assert proc.poll() is None
        assert health["status"] == "ok"
        assert set(seen) <= {200, 503}, seen  # never a 500: the outage is named
        error = unavailable[0]["error"]
        assert error["code"] == "database_unavailable"
        assert "cannot reach its database" in error["message"]
