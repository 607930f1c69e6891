"""The production path: ``dgpu coordinator serve --rpc`` (a child process) settling on its
timer through ``dgpu chain serve`` (JSON-RPC over LiteSVM with the real escrow)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.protocol.keyfile import load_identity, save_identity

from tests.contracts_client.support import Node, serve_node
from tests.coordinator.escrow_world import DGPU, make_world, net_of

pytestmark = pytest.mark.slow
DGPU_BIN = Path(sys.executable).parent / "dgpu"


@contextmanager
def coordinator_process(db: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [
            str(DGPU_BIN),
            "coordinator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(db),
            "--json",
            "--no-probe",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield json.loads(line)["url"], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


async def wait_for(url: str, predicate: Any, *, limit_s: float = 90.0) -> dict[str, Any]:
    """Poll the settlements page until ``predicate`` holds (the only event another process
    can offer), bounded in time."""
    with trio.fail_after(limit_s):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while True:
                response = await http.get("/api/v1/settlements", params={"limit": 50})
                page: dict[str, Any] = response.json()
                if predicate(page):
                    return page
                await trio.sleep(0.2)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with serve_node(tmp_path_factory.mktemp("rpc-node")) as running:
        yield running


async def test_timer_settles_through_json_rpc_and_survives_a_restart(
    node: Node, tmp_path: Path
) -> None:
    authority = load_identity(node.mint_authority_keyfile).to_solders()
    mint = localnet.TokenMint(node.mint, authority)
    async with RpcChain(node.url, poll_interval=0.05) as chain:
        world = await make_world(
            chain, providers=2, renters=1, label="rpc", mint=mint, authority=authority
        )
        key = tmp_path / "settler.json"
        save_identity(world.settler, key)
        renter = world.renters[0]
        channels = [
            (provider, await world.open(renter, provider, deposit=DGPU))
            for provider in world.providers
            for _ in range(3)
        ]
        db = tmp_path / "coordinator.sqlite"
        with coordinator_process(
            db,
            "--rpc",
            node.url,
            "--key",
            str(key),
            "--settle-every",
            "1",
            "--poll-interval",
            "0.05",
        ) as (url, proc):
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                for k, (provider, channel) in enumerate(channels):
                    result = await CoordinatorClient(http, provider).post_receipt(
                        world.receipt(renter, channel, (k + 1) * 10_000_000)
                    )
                    assert result["status"] == "created"
            page = await wait_for(
                url, lambda p: p["pending_channels"] == 0 and p["settled_total"] > 0
            )
            proc.send_signal(signal.SIGTERM)
            _, errors = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=60))
            assert proc.returncode == 0, errors[-2000:]
            assert "Traceback" not in errors
        owed = {p.address: 0 for p in world.providers}
        for k, (provider, _) in enumerate(channels):
            owed[provider.address] += net_of((k + 1) * 10_000_000)
        for provider in world.providers:
            assert await world.balance(provider) == owed[provider.address]
        assert page["settled_total"] == sum((k + 1) * 10_000_000 for k in range(6))
        assert {b["state"] for b in page["batches"]} == {"confirmed"}

        # Restarted on the same database: the history is there, nothing is paid twice.
        with coordinator_process(
            db, "--rpc", node.url, "--key", str(key), "--settle-every", "0"
        ) as (url, _):
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                again = (await http.get("/api/v1/settlements", params={"limit": 50})).json()
        assert again["batches"] == page["batches"]
        for provider in world.providers:
            assert await world.balance(provider) == owed[provider.address]
