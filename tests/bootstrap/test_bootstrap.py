"""The bootstrap peer: its CLI, and relaying gossiped offers into a real coordinator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from dgpu.bootstrap import RelayStats, relay_offers
from dgpu.node.coordinator_client import CoordinatorClient, CoordinatorClientError
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.protocol import Identity, Offer, save_identity
from dgpu.protocol.offers import offer_bytes

from tests.node.net.helpers import forged, offer_of

RELAY, PROVIDER, OTHER = (Identity.from_label(n) for n in ("relay", "provider-x", "other-y"))


@asynccontextmanager
async def child(argv: list[str]) -> AsyncIterator[dict[str, str]]:
    """A ``dgpu`` command that prints one JSON line when ready; terminated on exit."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "dgpu.cli.main", *argv],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with trio.fail_after(60):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"dgpu {argv[0]} exited with {process.poll()}"
                buffer += chunk
        yield json.loads(buffer.split(b"\n")[0])
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()
    assert process.returncode in (0, -15), f"dgpu {argv[0]} ended with {process.returncode}"


class ListSink:
    """An OfferSink that keeps what it gets and refuses offers of one provider."""

    def __init__(self, refuse: bytes) -> None:
        self.offers: list[Offer] = []
        self.refuse = refuse

    async def submit(self, offer: Offer) -> None:
        if offer.provider == self.refuse:
            raise CoordinatorClientError("refused", status=422, code="invalid_offer")
        self.offers.append(offer)


async def test_relay_skips_duplicates_and_refusals() -> None:
    one = offer_of(PROVIDER, now=1_700_000_000)
    two = offer_of(PROVIDER, now=1_700_000_010)
    bad = offer_of(OTHER, now=1_700_000_000)
    send, receive = trio.open_memory_channel[Offer](10)
    for offer in (one, one, bad, two, one):
        send.send_nowait(offer)
    send.close()
    sink, stats = ListSink(refuse=OTHER.public_key), RelayStats()
    await relay_offers(receive, sink, stats=stats)
    assert sink.offers == [one, two]
    assert (stats.relayed, stats.duplicates, stats.failed) == (2, 2, 1)


@pytest.mark.slow
async def test_bootstrap_relays_gossiped_offers_into_the_coordinator(tmp_path: Path) -> None:
    key = tmp_path / "relay.json"
    save_identity(RELAY, key)
    coordinator_args = [
        "coordinator",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--db",
        str(tmp_path / "coordinator.db"),
        "--relay",
        RELAY.address,
        "--settle-every",
        "0",
    ]
    async with child(coordinator_args) as coordinator:
        bootstrap_args = [
            "bootstrap",
            "serve",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--json",
            "--key",
            str(key),
            "--index",
            coordinator["url"],
        ]
        async with child(bootstrap_args) as boot:
            assert boot["peer_id"] == RELAY.peer_id
            assert boot["multiaddr"].endswith(f"/p2p/{RELAY.peer_id}")
            config = Libp2pConfig(bootstrap=(boot["multiaddr"],))
            async with (
                open_libp2p_network(PROVIDER, config) as net,
                CoordinatorClient.open(coordinator["url"]) as index,
            ):
                offer = offer_of(PROVIDER, now=net.now(), model="L40S", addrs=net.listen_addrs)
                fake = forged(offer_of(OTHER, now=net.now(), model="L40S"), PROVIDER)
                with trio.fail_after(45):
                    while True:  # gossip flows once the mesh has formed: repeat until indexed
                        await net._services.pubsub.publish("/dgpu/offers/1", offer_bytes(fake))
                        await net.advertise(offer)
                        found = await index.search_offers(gpu_model="L40S")
                        if found.offers:
                            break
                        await trio.sleep(0.5)
                assert [hit.offer for hit in found.offers] == [offer]
                assert found.offers[0].source == "relay"
