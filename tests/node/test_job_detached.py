"""``dgpu run --detach`` and ``dgpu jobs``, all real processes (chain serve, provider,
renter node, Docker): the renter's node is killed with SIGKILL mid-job and ``dgpu jobs
resume`` takes the job back within the provider's grace period; the job runs to its end
and the provider is paid exactly what the renter signed, nothing for time the renter's
node did not see."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import trio
from dgpu.cli import pidfile as pidfiles
from dgpu.node.store import NodeStore
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
WAIT_S = 120.0


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def cli_json(*args: str) -> dict[str, Any]:
    done = await trio.run_process(
        dgpu(*args), capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def signed_receipts(data_dir: Path, job_id: str) -> int:
    with NodeStore.open(data_dir / "node.sqlite") as store:
        return len(store.receipts("renter", bytes.fromhex(job_id)))


async def test_detached_job_survives_a_killed_renter_node(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    save_identity(renter_id, tmp_path / "renter.json")
    data = tmp_path / "renter-data"
    log_path = tmp_path / "provider.log"
    # a grace long enough for a new renter process to start and dial (python + libp2p)
    args = [*provider_args(world, provider_id, tmp_path), "--grace", "30"]
    with provider_process(args, log_path) as proc:
        ready = await ready_line(proc, log_path)
        started = await cli_json(
            "run", "--detach",
            *("--key", str(tmp_path / "renter.json"), "--data-dir", str(data)),
            *("--rpc", chain_node.url, "--mint", str(chain_node.mint)),
            *("--bootstrap", ready["multiaddrs"][0], "--p2p"),
            *("--gpu", "RTX 4090", "--max-price", "8", "--image", busybox_image),
            *("--duration", "120", "--json"),
            "--", "sh", "-c", "for i in $(seq 1 14); do echo tick $i; sleep 1; done",
        )  # fmt: skip
        job_id = started["job_id"]
        listed = await cli_json("jobs", "ls", "--data-dir", str(data), "--json")
        assert [j["job_id"] for j in listed["jobs"]] == [job_id]
        # Let it be paid a while, then kill its node without a chance to say anything.
        with trio.fail_after(WAIT_S):
            # another process's store: there is nothing to wait on but the file
            while signed_receipts(data, job_id) < 3:  # noqa: ASYNC110
                await trio.sleep(0.2)
        record = pidfiles.read(data / "running" / f"{job_id}.pid")
        assert record is not None and pidfiles.is_ours(record)
        os.kill(record.pid, signal.SIGKILL)
        with trio.fail_after(WAIT_S):
            while pidfiles.is_ours(record):  # noqa: ASYNC110 (another process)
                await trio.sleep(0.1)
        with NodeStore.open(data / "node.sqlite") as store:
            before = store.latest_receipt("renter", bytes.fromhex(job_id))
        assert before is not None
        result = await cli_json(
            "jobs", "resume", job_id[:10],
            *("--key", str(tmp_path / "renter.json"), "--data-dir", str(data)),
            *("--rpc", chain_node.url, "--mint", str(chain_node.mint)),
            *("--bootstrap", ready["multiaddrs"][0], "--json"),
        )  # fmt: skip
        assert result["state"] == "succeeded", result
        with NodeStore.open(data / "node.sqlite") as store:
            latest = store.latest_receipt("renter", bytes.fromhex(job_id))
        assert latest is not None and latest.cumulative > before.cumulative  # signed on
        assert result["amount_paid"] == latest.cumulative == PRICE * result["seconds_billed"]
        shown = await trio.run_process(
            dgpu("jobs", "logs", job_id, "--data-dir", str(data)), capture_stdout=True, cwd=ROOT
        )
        logs = shown.stdout.decode()
        assert "tick 1\n" in logs and "tick 14\n" in logs
        assert "the renter is back" in log_path.read_text()
    # The provider settled on chain what the renter signed: exactly that, no more.
    assert await world.tokens(provider_id) == result["amount_paid"] * 95 // 100
    await world.chain.aclose()
