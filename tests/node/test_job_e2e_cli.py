"""``dgpu run`` against ``dgpu provider start``, both as child processes, over libp2p and
the local chain (``dgpu chain serve``), with a busybox job in Docker whose output comes
back over the provider's bulk channel (libp2p streams)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio
from dgpu.node.net.bulk import BULK_PROTOCOL
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import (
    PRICE,
    ROOT,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def test_dgpu_run_json_against_dgpu_provider_start(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    renter_key = tmp_path / "renter.json"
    save_identity(renter_id, renter_key)
    log_path = tmp_path / "provider.log"
    with provider_process(provider_args(world, provider_id, tmp_path), log_path) as proc:
        ready = await ready_line(proc, log_path)
        # outputs move as libp2p streams (Noise): no TCP address of their own
        assert ready["bulk_addr"] == BULK_PROTOCOL
        out_dir = tmp_path / "outputs"
        run = await trio.run_process(
            dgpu(
                "run",
                *("--key", str(renter_key), "--data-dir", str(tmp_path / "renter-data")),
                *("--rpc", chain_node.url, "--mint", str(chain_node.mint)),
                *("--bootstrap", ready["multiaddrs"][0], "--p2p"),
                *("--gpu", "RTX 4090", "--max-price", "8", "--image", busybox_image),
                *("--duration", "120", "--output-dir", str(out_dir), "--json"),
                "--",
                *("sh", "-c", "echo hi from the job; sleep 2; echo 7 > /out/seven.txt"),
            ),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr.decode()[-3000:]
        result = json.loads(run.stdout)
        assert result["state"] == "succeeded"
        assert result["provider"] == provider_id.address
        assert result["seconds_billed"] >= 2
        assert result["amount_paid"] == PRICE * result["seconds_billed"]
        (output,) = result["outputs"]
        assert output["path"] == "seven.txt"
        assert output["sha256"] == hashlib.sha256(b"7\n").hexdigest()
        assert (out_dir / "seven.txt").read_bytes() == b"7\n"
        assert b"hi from the job" in run.stderr  # job stdout goes to stderr with --json
        # The output came over the bulk channel (the provider serves none over libp2p).
        assert b"outputs: 1 file, 2 bytes over the bulk channel" in run.stderr
        assert f"published on {BULK_PROTOCOL}" in log_path.read_text()
        # The channel cannot be reclaimed yet: the CLI says when.
        reclaim = await trio.run_process(
            dgpu(
                "run",
                "reclaim",
                *("--key", str(renter_key), "--data-dir", str(tmp_path / "renter-data")),
                *("--rpc", chain_node.url, "--json"),
            ),
            capture_stdout=True,
            cwd=ROOT,
        )
        (channel,) = json.loads(reclaim.stdout)["channels"]
        assert channel["status"] == "not_yet"
        assert channel["amount"] == 120 * PRICE - result["amount_paid"]
    # The provider settled the job on chain itself (no coordinator).
    assert await world.tokens(provider_id) == result["amount_paid"] * 95 // 100
    status = await trio.run_process(
        dgpu("provider", "status", "--data-dir", str(tmp_path / "provider-data"), "--json"),
        capture_stdout=True,
        cwd=ROOT,
    )
    report = json.loads(status.stdout)
    (job,) = report["jobs"]
    assert job["state"] == "succeeded" and job["paid"] == result["amount_paid"]
    (settled,) = report["settlements"]
    assert settled["status"] == "settled" and settled["paid_on_chain"] == result["amount_paid"]
    await world.chain.aclose()
