"""SIGSTOP/SIGCONT of each side mid-job, with real processes (``@pytest.mark.docker``).

``dgpu provider start`` and ``dgpu run`` run as child processes against ``dgpu chain
serve``; a busybox job runs in Docker. One side is frozen past interval + grace, then
resumed. Each test asserts the money: what the chain settled equals the last receipt the
provider acknowledged (stored), and every amount ``dgpu run`` reports equals the chain's;
and who was at fault is recorded from evidence:

- renter frozen: the provider stops the job for non-payment; the resumed renter signs
  nothing for the job the provider already stopped and says why.
- provider frozen: its container stops itself (the watchdog); the resumed provider records
  its own stall, not the renter's non-payment, and bills nothing after the watchdog's
  deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import trio
from dgpu.node.executors.base import run_sync_abandoning
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import (
    PRICE,
    ROOT,
    LocalChain,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RUN_TIMEOUT_S = 60.0
INTERVAL_S, GRACE_S = 1, 2  # provider_args' --interval / --grace
FROZEN_S = 10


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


def running(client: docker.DockerClient, owner: str) -> list[str]:
    return [c.name for c in client.containers.list(filters={"label": f"dgpu.owner={owner}"})]


async def wait_running(client: docker.DockerClient, owner: str, run: subprocess.Popen[str]) -> None:
    with trio.fail_after(RUN_TIMEOUT_S):
        while not running(client, owner):
            assert run.poll() is None, "dgpu run ended before its job ran"
            await trio.sleep(0.2)


def start_run(
    world: LocalChain, renter: Identity, tmp_path: Path, ready: dict[str, Any], image: str
) -> subprocess.Popen[str]:
    key = tmp_path / "renter.json"
    save_identity(renter, key)
    with (tmp_path / "run.log").open("a") as log:
        return subprocess.Popen(
            dgpu(
                "-v",
                "run",
                *("--key", str(key), "--data-dir", str(tmp_path / "renter-data")),
                *("--rpc", world.node.url, "--mint", str(world.node.mint)),
                *("--bootstrap", ready["multiaddrs"][0], "--p2p"),
                *("--gpu", "RTX 4090", "--max-price", "8", "--image", image),
                *("--duration", "120", "--json", "--"),
                *("sh", "-c", "echo started; sleep 300"),
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )


async def finish(run: subprocess.Popen[str], tmp_path: Path) -> dict[str, Any]:
    with trio.fail_after(RUN_TIMEOUT_S):
        await run_sync_abandoning(run.wait)
    assert run.stdout is not None
    out = run.stdout.read()
    run.stdout.close()
    assert out, (tmp_path / "run.log").read_text()[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result


async def freeze(proc: subprocess.Popen[str], seconds: float) -> None:
    proc.send_signal(signal.SIGSTOP)
    try:
        await trio.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGCONT)


async def provider_status(world: LocalChain, tmp_path: Path) -> dict[str, Any]:
    status = await trio.run_process(
        dgpu(
            "provider",
            "status",
            *("--data-dir", str(tmp_path / "provider-data"), "--rpc", world.node.url, "--json"),
        ),
        capture_stdout=True,
        cwd=ROOT,
    )
    report: dict[str, Any] = json.loads(status.stdout)
    assert report["settled_from"] == "chain"
    return report


async def settled_on_chain(world: LocalChain, result: dict[str, Any]) -> int:
    from solders.pubkey import Pubkey

    state = await world.escrow.read_channel(bytes(Pubkey.from_string(result["channel"])))
    assert state is not None
    return state.settled


async def test_renter_frozen_past_grace_signs_nothing_for_a_stopped_job(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    log_path = tmp_path / "provider.log"
    with provider_process(provider_args(world, provider_id, tmp_path), log_path) as proc:
        ready = await ready_line(proc, log_path)
        run = start_run(world, renter_id, tmp_path, ready, busybox_image)
        try:
            await wait_running(docker_client, provider_id.address, run)
            await trio.sleep(3)  # a few receipts signed and acknowledged
            # frozen past interval + grace (3 s): the provider stops the job (its stop
            # takes up to 5 s more: sh as PID 1 ignores SIGTERM) and settles
            started = time.monotonic()
            await freeze(run, 12)
            result = await finish(run, tmp_path)
        finally:
            if run.poll() is None:
                run.kill()
        print(f"dgpu run ended {time.monotonic() - started:.1f}s after the freeze began")
        report = await provider_status(world, tmp_path)
    assert result["state"] == "stopped"
    assert "nothing was signed after" in result["detail"]
    (job,) = report["jobs"]
    assert job["stop_reason"] == "non_payment"  # the renter's fault: it ran, we waited
    settled = await settled_on_chain(world, result)
    assert settled > 0
    # the money: the chain settled the last receipt the provider acknowledged (stored) ...
    assert settled == job["paid"] == job["settled"]
    assert report["unsettled"] == []
    # ... and dgpu run reports exactly that: it signed nothing the provider did not take
    assert result["acknowledged"] == settled
    assert result["amount_paid"] == settled
    assert result["paid_on_chain"] == settled
    assert result["seconds_billed"] * PRICE == settled
    await world.chain.aclose()


async def test_provider_frozen_past_grace_is_not_the_renters_non_payment(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    log_path = tmp_path / "provider.log"
    with provider_process(provider_args(world, provider_id, tmp_path), log_path) as proc:
        ready = await ready_line(proc, log_path)
        run = start_run(world, renter_id, tmp_path, ready, busybox_image)
        try:
            await wait_running(docker_client, provider_id.address, run)
            seen_running = time.monotonic()
            await trio.sleep(3)
            # frozen past interval + grace: the container's watchdog stops it meanwhile
            ran_before = time.monotonic() - seen_running
            await freeze(proc, FROZEN_S)
            result = await finish(run, tmp_path)
        finally:
            if run.poll() is None:
                run.kill()
        report = await provider_status(world, tmp_path)
    assert result["state"] == "stopped"
    (job,) = report["jobs"]
    assert job["stop_reason"] == "provider_stalled", job
    assert "not the renter's fault" in job["detail"]
    assert "stalled" in log_path.read_text()
    settled = await settled_on_chain(world, result)
    assert settled == job["paid"] == job["settled"]
    assert report["unsettled"] == []
    assert result["acknowledged"] == result["amount_paid"] == result["paid_on_chain"] == settled
    # billed up to the watchdog's deadline (interval + grace after the last receipt
    # before the freeze), not for the seconds the provider was frozen after it
    assert job["seconds_billed"] * PRICE == settled
    assert result["seconds_billed"] <= ran_before + INTERVAL_S + GRACE_S + 2, result
    await world.chain.aclose()
