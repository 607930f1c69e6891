"""A real coordinator under hypercorn on a loopback port, in a thread with its own loop."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from dgpu.coordinator.admission import Prober
from dgpu.coordinator.app import create_app
from dgpu.coordinator.config import AdmissionLimits, CoordinatorConfig, RateLimit
from dgpu.coordinator.server import Listen, bind, serve_app
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, Receipt
from dgpu.protocol.offers import OfferTerms, make_offer
from dgpu.protocol.signing import sign_receipt

from tests.coordinator.pg import Cluster, running_cluster

GENEROUS = RateLimit(per_second=10_000.0, burst=100_000)
OPEN_ADMISSION = AdmissionLimits(live_offers_per_key=1_000, new_keys_per_ip_per_hour=100_000)
"""Tests post many keys' offers from one loopback address; the limits have their own tests."""
MINT = bytes(range(32))
PROGRAM = bytes(range(1, 33))


class ManualClock:
    """A clock the test moves (shared by the server and its clients)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time()) if start is None else start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Server:
    url: str
    config: CoordinatorConfig
    coordinator: Coordinator
    loop: asyncio.AbstractEventLoop
    clock: Callable[[], float]

    def count(self, table: str, where: str = "1=1", params: tuple[Any, ...] = ()) -> int:
        """Rows of ``table`` matching ``where``, read through the server's own store (sqlite
        or PostgreSQL alike; ``?`` placeholders)."""
        sql = f"SELECT count(*) FROM {table} WHERE {where}"  # noqa: S608 (test helper)
        db = self.coordinator.store.db
        return int(self.call(lambda: db.scalar(sql, params)))

    def call(self, coro_fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop (e.g. a settlement round) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)


@contextmanager
def running_server(
    config: CoordinatorConfig,
    *,
    backend: SettlementBackend | None = None,
    clock: Callable[[], float] = time.time,
    prober: Prober | None = None,
) -> Iterator[Server]:
    sock = bind(Listen("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    app = create_app(config, backend=backend, clock=clock, prober=prober)
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            state["stop"] = asyncio.Event()
            state["loop"] = asyncio.get_running_loop()
            ready.set()
            await serve_app(app, sock, shutdown=state["stop"], handle_signals=False)

        try:
            asyncio.run(main())
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(target=run, name="coordinator", daemon=True)
    thread.start()
    assert ready.wait(30)
    url = f"http://{host}:{port}"
    # The socket listens already: this request waits in the backlog until startup is done.
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{url}/healthz").status_code == 200
    try:
        yield Server(url, config, app.state.coordinator, state["loop"], clock)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "coordinator did not shut down"
        assert "error" not in state, state.get("error")


def make_config(tmp: Path, **changes: Any) -> CoordinatorConfig:
    base = CoordinatorConfig(
        db_path=tmp / "coordinator.sqlite",
        per_key_limit=GENEROUS,
        per_ip_limit=GENEROUS,
        admission=OPEN_ADMISSION,
        settle_every_s=0,
        snapshot_every_s=3600,
    )
    return replace(base, **changes)


ADMIN = Identity.from_label("coordinator-admin")
RELAY = Identity.from_label("relay")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the session (each server gets its own database)."""
    with running_cluster(Path(tempfile.mkdtemp(prefix="dgpu-pg-"))) as cluster:
        yield cluster


STORES = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store the module's servers run on: the suite runs once on each."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def database_url(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL database for the module's server, or None (sqlite)."""
    if store_kind == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture
def fresh_store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """What ``open_store`` opens for one test: a new sqlite file or PostgreSQL database."""
    if store_kind == "sqlite":
        return tmp_path / "store.sqlite"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, clock: ManualClock, database_url: str | None
) -> Iterator[Server]:
    config = make_config(
        tmp_path_factory.mktemp("coordinator"),
        admins=frozenset({ADMIN.address}),
        relays=frozenset({RELAY.address}),
        database_url=database_url,
    )
    with running_server(config, clock=clock) as running:
        yield running


def offer_for(
    provider: Identity,
    *,
    model: str = "NVIDIA GeForce RTX 4090",
    count: int = 1,
    vram_mb: int = 24_576,
    price: int = 400_000,
    region: str = "eu-west",
    simulated: bool = True,
    now: int,
    ttl_s: int = 600,
    offer_id: bytes | None = None,
    multiaddrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/4001",),
) -> Offer:
    terms = OfferTerms(
        gpu_model=model,
        gpu_count=count,
        vram_mb=vram_mb,
        price_per_gpu_second=price,
        mint=MINT,
        region=region,
        max_duration_s=3600,
        simulated=simulated,
    )
    return make_offer(
        provider,
        terms,
        multiaddrs=list(multiaddrs),
        now=now,
        ttl_s=ttl_s,
        offer_id=offer_id if offer_id is not None else os.urandom(16),
    )


@asynccontextmanager
async def client_for(
    server: Server, identity: Identity | None = None
) -> AsyncIterator[CoordinatorClient]:
    """A CoordinatorClient on the server's clock (works under trio)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield CoordinatorClient(http, identity, clock=server.clock)


def receipt_for(
    renter: Identity,
    *,
    channel: bytes,
    cumulative: int,
    job_id: bytes = b"j" * 16,
    open_nonce: int = 1,
    seq: int = 1,
    program: bytes = PROGRAM,
) -> Receipt:
    receipt = Receipt(
        job_id=job_id,
        seq=seq,
        renter=renter.public_key,
        program_id=program,
        channel=channel,
        open_nonce=open_nonce,
        cumulative=cumulative,
    )
    return sign_receipt(receipt, renter)
