"""Offer admission (issue 12, attack 6, coordinator side): per-key and per-address limits,
new keys ranked below proven ones, and offers served only once their provider was reached
over libp2p and proved its key (real ``dgpu coordinator serve`` and libp2p processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio
from dgpu.coordinator.config import AdmissionLimits
from dgpu.node.coordinator_client import CoordinatorClient, CoordinatorClientError
from dgpu.node.net.libp2p.probe import ProbeProcess
from dgpu.node.renter import CoordinatorIndex, OfferQuery, rank
from dgpu.protocol.identity import Identity
from dgpu.protocol.offers import offer_bytes

from tests.coordinator.conftest import (
    RELAY,
    ManualClock,
    client_for,
    make_config,
    offer_for,
    receipt_for,
    running_server,
)
from tests.coordinator.pg import Cluster
from tests.coordinator.test_replicas import replica

DGPU_BIN = Path(sys.executable).parent / "dgpu"


async def test_live_offers_per_key_and_new_keys_per_address_are_limited(tmp_path: Path) -> None:
    limits = AdmissionLimits(live_offers_per_key=2, new_keys_per_ip_per_hour=3)
    clock = ManualClock()
    config = make_config(tmp_path, admission=limits, relays=frozenset({RELAY.address}))
    with running_server(config, clock=clock) as server:
        now = int(clock())
        busy = Identity.from_label("adm-busy")
        async with client_for(server, busy) as client:
            first = offer_for(busy, now=now)
            await client.post_offer(first)
            await client.post_offer(offer_for(busy, now=now))
            with pytest.raises(CoordinatorClientError) as third:
                await client.post_offer(offer_for(busy, now=now))
            # refreshing a live offer is not a new one
            refreshed = await client.post_offer(
                offer_for(busy, now=now + 1, offer_id=first.offer_id)
            )
        # busy was the first new key of this address; two more are accepted, then refused
        for label in ("adm-2", "adm-3"):
            identity = Identity.from_label(label)
            async with client_for(server, identity) as client:
                await client.post_offer(offer_for(identity, now=now))
        fourth = Identity.from_label("adm-4")
        async with client_for(server, fourth) as client:
            with pytest.raises(CoordinatorClientError) as new_key:
                await client.post_offer(offer_for(fourth, now=now))
        # a trusted relay forwards many providers from one address: not counted here
        async with client_for(server, RELAY) as relay:
            relayed = await relay.post_offer_bytes(offer_bytes(offer_for(fourth, now=now)))
        # known keys post on; an hour later the address may introduce keys again
        async with client_for(server, busy) as client:
            clock.advance(3601)
            later = Identity.from_label("adm-5")
            await client.post_offer(offer_for(busy, now=int(clock())))
        async with client_for(server, later) as client:
            accepted = await client.post_offer(offer_for(later, now=int(clock())))
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz")).json()
    # no prober: every offer is served at once, and /healthz says so
    assert health["probing"] is False and health["pending_offers"] == 0
    assert (third.value.status, third.value.code) == (422, "too_many_offers")
    assert "2 live offers (limit 2)" in str(third.value)
    assert refreshed["status"] == "refreshed"
    assert (new_key.value.status, new_key.value.code) == (429, "too_many_new_keys")
    assert "3 new provider keys" in str(new_key.value)
    assert relayed["status"] == "created"
    assert accepted["status"] == "created" and accepted["admission"] == "admitted"


@pytest.mark.slow  # 1,000 signed posts
async def test_a_proven_provider_ranks_above_a_thousand_new_keys_at_price_one(
    tmp_path: Path,
) -> None:
    """The issue's flood: 1,000 fresh keys at price 1 were ranked first (score 0.7). A
    provider with one completed job now comes first in the index's order and in the
    renter's discovery (what ``dgpu run`` tries first)."""
    clock = ManualClock()
    with running_server(make_config(tmp_path), clock=clock) as server:
        now = int(clock())
        proven, renter = Identity.from_label("adm-proven"), Identity.from_label("adm-renter")
        job = os.urandom(16)
        async with client_for(server, proven) as client:
            await client.post_offer(offer_for(proven, now=now, price=400_000, region="flood"))
            await client.post_receipt(
                receipt_for(renter, channel=os.urandom(32), cumulative=5, job_id=job)
            )
        async with client_for(server, renter) as client:
            await client.report_job(job, proven.address, "completed")
        fakes = [Identity.from_label(f"adm-fake-{i}") for i in range(1_000)]

        async def post(fake: Identity) -> None:
            async with client_for(server, fake) as client:
                await client.post_offer(offer_for(fake, now=now, price=1, region="flood"))

        for start in range(0, len(fakes), 50):
            async with trio.open_nursery() as nursery:
                for fake in fakes[start : start + 50]:
                    nursery.start_soon(post, fake)
        async with client_for(server, renter) as client:
            profile = await client.provider(proven.address)
            fake_profile = await client.provider(fakes[0].address)
            page = await client.search_offers(region="flood", limit=10)
            # what find_offers does with the index's answer (dgpu run's first step)
            query = OfferQuery("RTX 4090", region="flood", limit=32)
            found = rank(
                await CoordinatorIndex(client).search(query),
                query,
                now=int(clock()),
                source="coordinator",
            )
    assert page.total == 1_001
    assert page.offers[0].offer.provider == proven.public_key
    assert page.offers[0].provider_proven and not page.offers[1].provider_proven
    assert found.candidates[0].offer.provider == proven.public_key
    assert profile["proven"] and not fake_profile["proven"]
    assert fake_profile["score"] < profile["score"]
    assert fake_profile["score"] <= 0.25


@contextmanager
def coordinator_process(db: Path, *args: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            *(str(DGPU_BIN), "coordinator", "serve", "--listen", "127.0.0.1:0", "--db", str(db)),
            *("--json", "--probe-timeout", "5", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        url = str(json.loads(line)["url"])
        with httpx.Client(timeout=60) as http:
            assert http.get(f"{url}/healthz").status_code == 200
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_only_offers_of_providers_that_answer_as_their_key_are_served(
    tmp_path: Path,
) -> None:
    """A real coordinator process probing over libp2p; a real libp2p peer as the honest
    provider. An offer whose address does not answer, and one whose address answers as
    another peer ID, stay pending; the honest one is served."""
    with coordinator_process(tmp_path / "c.sqlite") as url:
        async with ProbeProcess.spawn("adm-honest") as peer:
            honest = Identity.from_label("adm-honest")
            silent, impostor = Identity.from_label("adm-silent"), Identity.from_label("adm-imp")
            now = int(time.time())
            offers = {
                "honest": (honest, [peer.multiaddr]),
                "silent": (silent, [f"/ip4/127.0.0.1/tcp/{_closed_port()}"]),
                "impostor": (impostor, [peer.multiaddr]),  # answers as adm-honest
            }
            posted = {}
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                for name, (identity, addrs) in offers.items():
                    offer = offer_for(identity, now=now, region="probed", multiaddrs=tuple(addrs))
                    posted[name] = await CoordinatorClient(http, identity).post_offer(offer)
                health = (await http.get("/healthz")).json()
                client = CoordinatorClient(http, None)
                with trio.fail_after(60):  # all three probed (served or refused)
                    while True:
                        probes = [
                            (await http.get(f"/api/v1/providers/{i.address}")).json()
                            for i, _ in offers.values()
                        ]
                        if all(p.get("reachability") for p in probes):
                            break
                        await trio.sleep(0.2)
                found = await client.search_offers(region="probed")
    assert health["probing"] is True
    assert {p["admission"] for p in posted.values()} == {"pending"}
    assert [o.offer.provider for o in found.offers] == [honest.public_key]
    by_name = dict(zip(offers, probes, strict=True))
    assert by_name["honest"]["reachability"]["reachable"] is True
    assert by_name["silent"]["reachability"]["reachable"] is False
    assert by_name["impostor"]["reachability"]["reachable"] is False


@pytest.mark.slow
async def test_replicas_count_new_keys_per_address_together(pg_cluster: Cluster) -> None:
    """Two ``dgpu coordinator serve`` processes on one PostgreSQL database: the new keys an
    address posts through either count against one limit."""
    db = pg_cluster.new_database("admission")
    limit = ("--new-keys-per-ip", "2")
    with replica(db, "a", *limit) as (url_a, _), replica(db, "b", *limit) as (url_b, _):
        now = int(time.time())
        answers = []
        for index, url in enumerate((url_a, url_b, url_a, url_b)):
            identity = Identity.from_label(f"adm-replica-{index}")
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                try:
                    await CoordinatorClient(http, identity).post_offer(offer_for(identity, now=now))
                    answers.append("created")
                except CoordinatorClientError as exc:
                    answers.append(str(exc.code))
    assert answers == ["created", "created", "too_many_new_keys", "too_many_new_keys"]
