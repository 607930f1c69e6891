"""A provider killed with SIGKILL mid-job, then restarted (``@pytest.mark.docker``).

The provider runs as ``dgpu provider start`` in a child process against a local chain
(``dgpu chain serve``: the escrow ``.so`` in LiteSVM behind JSON-RPC); the renter runs in
this process over libp2p. The renter records which receipts the provider acknowledged
(stored durably); the provider is killed while its busybox container runs. On restart it
must still hold every acknowledged receipt and settle it on chain, and remove the
container it no longer owns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import pytest
import trio
from dgpu.contracts import localnet
from dgpu.contracts.chain import RpcChain
from dgpu.contracts.escrow import EscrowClient
from dgpu.node.config import RenterConfig
from dgpu.node.executors.base import run_sync_abandoning
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.payments.chain import ChainEscrow
from dgpu.node.renter import ReceiptSigned, Renter, RenterEvent
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from solders.keypair import Keypair

from tests.chain.support import Node, serve_node
from tests.fixtures_docker import TEST_IMAGE
from tests.node.rolekit import job_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SOL = 10**9
PRICE_PER_HOUR = "7.2"  # dGPU per GPU-hour -> 2_000_000 base units per GPU-second
READY_TIMEOUT_S = 90.0
ROOT = Path(__file__).parents[2]


@contextmanager
def provider_process(args: list[str], log_path: Path) -> Iterator[subprocess.Popen[str]]:
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dgpu.cli.main", "-v", "provider", "start", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


async def ready_line(proc: subprocess.Popen[str], log_path: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    with trio.move_on_after(READY_TIMEOUT_S):
        line = await run_sync_abandoning(proc.stdout.readline)
        if line:
            info: dict[str, Any] = json.loads(line)
            return info
    log_text = await trio.Path(log_path).read_text()
    raise AssertionError(f"provider did not get ready:\n{log_text[-3000:]}")


def leftovers(client: docker.DockerClient, owner: str) -> list[str]:
    selector = {"label": f"dgpu.owner={owner}"}
    return [c.name for c in client.containers.list(all=True, filters=selector)]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def test_kill_9_mid_job_loses_no_acknowledged_receipt(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    chain = RpcChain(chain_node.url, confirm_timeout=30.0, poll_interval=0.05)
    client = EscrowClient(chain)
    escrow = ChainEscrow(client)
    authority = load_identity(chain_node.mint_authority_keyfile).to_solders()
    mint = localnet.TokenMint(chain_node.mint, authority)
    admin, treasury = Keypair(), Identity.generate()
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await chain.request_airdrop(admin.pubkey(), 10 * SOL)
    for who, tokens in ((treasury, 0), (provider_id, 0), (renter_id, 10**13)):
        await localnet.fund_wallet(
            chain, who.to_solders().pubkey(), lamports=10 * SOL, mint=mint, tokens=tokens
        )
    await client.initialize(
        admin, treasury=treasury.to_solders().pubkey(), mints=[mint.address], fee_bps=500
    )
    key = tmp_path / "provider.json"
    save_identity(provider_id, key)
    data_dir = tmp_path / "provider-data"
    log_path = tmp_path / "provider.log"
    args = [
        *("--key", str(key), "--data-dir", str(data_dir), "--rpc", chain_node.url),
        *("--mint", str(chain_node.mint), "--gpus", "1xRTX 4090", "--json"),
        *("--allow-image", TEST_IMAGE, "--interval", "1", "--grace", "2"),
        *("--price", PRICE_PER_HOUR, "--max-duration", "600", "--offer-ttl", "120"),
    ]
    with provider_process(args, log_path) as first:
        ready = await ready_line(first, log_path)
        assert ready["offer"]["simulated"] is True
        events: list[RenterEvent] = []

        def on_event(event: RenterEvent) -> None:
            events.append(event)
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 5 and first.poll() is None:
                first.send_signal(signal.SIGKILL)

        with NodeStore.open(tmp_path / "renter.sqlite") as store:
            config = Libp2pConfig(bootstrap=(ready["multiaddrs"][0],))
            async with open_libp2p_network(renter_id, config) as network:
                renter = Renter(
                    identity=renter_id,
                    config=RenterConfig(
                        mint=bytes(chain_node.mint), program_id=bytes(client.program_id)
                    ),
                    network=network,
                    escrow=escrow,
                    store=store,
                )
                spec = job_spec(
                    "echo started; sleep 300",
                    image=busybox_image,
                    max_price_per_gpu_second=4_000_000,
                )
                result = await renter.run_job(spec, events=on_event)
        first.wait()
        assert first.returncode == -signal.SIGKILL
    assert result.state == "aborted"
    assert result.acknowledged > 0
    assert result.acknowledged <= result.amount_paid
    # The killed provider left its container behind.
    assert leftovers(docker_client, provider_id.address) != []
    state = await escrow.read_channel(result.channel)
    assert state is not None and state.settled == 0

    with provider_process(args, log_path) as second:
        await ready_line(second, log_path)  # ready = recovered: swept and settled
        assert leftovers(docker_client, provider_id.address) == []
        state = await escrow.read_channel(result.channel)
        assert state is not None
        assert result.acknowledged <= state.settled <= result.amount_paid
        status = await trio.run_process(
            [sys.executable, "-m", "dgpu.cli.main", "provider", "status", "--data-dir",
             str(data_dir), "--json"],
            capture_stdout=True, cwd=ROOT,
        )  # fmt: skip
    report = json.loads(status.stdout)
    (job,) = report["jobs"]
    assert job["job_id"] == result.job_id.hex()
    assert job["state"] == "stopped" and job["stop_reason"] == "provider_restart"
    assert job["paid"] >= result.acknowledged
    assert report["unsettled"] == []
    await chain.aclose()
