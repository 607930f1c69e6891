"""What offer admission costs an honest provider and leaves a flood of fakes (issue 12,
attack 6, coordinator side).

    python benchmarks/bench_admission.py [--fakes 1000]

One run, real processes on loopback: a ``dgpu coordinator serve`` that probes providers over
libp2p, and one real libp2p peer as the honest provider (``dgpu.node.net.libp2p.probe``).
Measured: the time from the honest provider's POST until its offer is served (probe
included) beside the POST alone on a ``--no-probe`` coordinator; then ``--fakes`` fresh
keys post offers at price 1 from this one address with unreachable addresses: how many are
refused by the new-keys-per-address limit, how many are stored, how many are served, and
where the honest offer ranks. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers

from dgpu.node.coordinator_client import CoordinatorClient, CoordinatorClientError
from dgpu.node.net.libp2p.probe import ProbeProcess
from dgpu.protocol.identity import Identity

from tests.coordinator.conftest import offer_for

DGPU = Path(sys.executable).parent / "dgpu"


@contextmanager
def coordinator(db: Path, *args: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            *(str(DGPU), "coordinator", "serve", "--listen", "127.0.0.1:0", "--db", str(db)),
            *("--json", "--ip-rate", "100000", "--ip-burst", "100000", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = str(json.loads(proc.stdout.readline())["url"])
        with httpx.Client(timeout=60) as http:
            http.get(f"{url}/healthz")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def served_after_post(url: str, identity: Identity, addr: str) -> float:
    """Seconds from the POST until the offer shows in a search."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        client = CoordinatorClient(http, identity)
        start = time.monotonic()
        await client.post_offer(
            offer_for(identity, now=int(time.time()), region="bench", multiaddrs=(addr,))
        )
        while not (await client.search_offers(region="bench")).offers:  # noqa: ASYNC110
            await trio.sleep(0.01)  # (another process's state: polled)
        return time.monotonic() - start


async def flood(url: str, fakes: int) -> dict[str, int]:
    counts = {"stored": 0, "refused (new keys per address)": 0, "refused (other)": 0}
    dead = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for index in range(fakes):
            fake = Identity.from_label(f"bench-fake-{index}")
            offer = offer_for(
                fake, now=int(time.time()), price=1, region="bench", multiaddrs=(dead,)
            )
            try:
                await CoordinatorClient(http, fake).post_offer(offer)
                counts["stored"] += 1
            except CoordinatorClientError as exc:
                key = (
                    "refused (new keys per address)"
                    if exc.code == "too_many_new_keys"
                    else "refused (other)"
                )
                counts[key] += 1
    return counts


async def main(fakes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with ProbeProcess.spawn("bench-honest") as peer:
            honest = Identity.from_label("bench-honest")
            with coordinator(Path(tmp) / "open.sqlite", "--no-probe") as url:
                unprobed = await served_after_post(url, honest, peer.multiaddr)
            with coordinator(Path(tmp) / "probed.sqlite", "--probe-timeout", "5") as url:
                probed = await served_after_post(url, honest, peer.multiaddr)
                start = time.monotonic()
                counts = await flood(url, fakes)
                posting = time.monotonic() - start
                await trio.sleep(2)  # let the probes of the stored fakes fail
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    page = await CoordinatorClient(http, None).search_offers(region="bench")
                    health = (await http.get("/healthz")).json()
    print(f"honest offer served {unprobed * 1000:.0f} ms after its POST without probing,")
    print(f"                    {probed * 1000:.0f} ms with the libp2p probe")
    print(f"{fakes} fake keys posted from one address in {posting:.1f} s:")
    for name, count in counts.items():
        print(f"  {name:32} {count}")
    print(f"  {'served in search':32} {page.total - 1}")
    print(f"  {'pending (probe failed)':32} {health['pending_offers']}")
    first = page.offers[0].offer.provider == honest.public_key if page.offers else False
    print(f"honest offer first in search: {'yes' if first else 'no'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fakes", type=int, default=1000)
    trio.run(main, parser.parse_args().fakes)
