"""Nodes notice a different chain (issue 14), with real processes (``@pytest.mark.docker``).

A provider and a renter run one job on a ``dgpu chain serve`` chain; their stores record
its genesis hash. Against a fresh chain (a new state directory: a new genesis) both refuse
to start, in words naming both chains, instead of failing later on a missing account, and
``dgpu run reclaim`` does not report the vanished channel as closed; against the same chain
restarted from its state directory both work.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import trio
from dgpu.contracts_client.chain import RpcChain
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import serve_node
from tests.node.clikit import (
    ROOT,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run_args(tmp_path: Path, url: str, mint: str, bootstrap: str, image: str) -> list[str]:
    return dgpu(
        "run",
        *("--key", str(tmp_path / "renter.json"), "--data-dir", str(tmp_path / "renter-data")),
        *("--rpc", url, "--mint", mint, "--bootstrap", bootstrap, "--p2p"),
        *("--gpu", "RTX 4090", "--max-price", "8", "--image", image),
        *("--duration", "60", "--json", "--", "echo", "hi"),
    )


def reclaim_args(tmp_path: Path, url: str) -> list[str]:
    return dgpu(
        "run",
        "reclaim",
        *("--key", str(tmp_path / "renter.json"), "--data-dir", str(tmp_path / "renter-data")),
        *("--rpc", url, "--json"),
    )


async def test_nodes_refuse_a_fresh_chain_and_work_on_theirs(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    provider_id, renter_id = Identity.generate(), Identity.generate()
    save_identity(renter_id, tmp_path / "renter.json")
    log_path = tmp_path / "provider.log"
    with serve_node(tmp_path / "chain") as node:
        world = await local_chain(node)
        genesis = str(await world.chain.genesis_hash())
        await world.fund(provider_id)
        await world.fund(renter_id, tokens=10**13)
        args = provider_args(world, provider_id, tmp_path)
        with provider_process(args, log_path) as proc:
            ready = await ready_line(proc, log_path)
            run = await trio.run_process(
                run_args(tmp_path, node.url, str(node.mint), ready["multiaddrs"][0], busybox_image),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=ROOT,
            )
            assert run.returncode == 0, run.stderr.decode()[-3000:]
            channel = json.loads(run.stdout)["channel"]
        await world.chain.aclose()
    for store in ("provider-data", "renter-data"):
        with NodeStore.open(tmp_path / store / "node.sqlite") as db:
            recorded = db.chain()
        assert recorded is not None and recorded[0] == genesis, store

    with serve_node(tmp_path / "fresh-chain") as fresh:  # a new state dir: a new chain
        provider = await trio.run_process(
            dgpu("provider", "start", *[a if a != node.url else fresh.url for a in args]),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        said = provider.stderr.decode()
        assert provider.returncode != 0
        assert f"this data dir's channels are on chain {genesis}, but {fresh.url} is chain" in said
        assert "Traceback" not in said and "AccountNotFound" not in said
        run = await trio.run_process(
            run_args(tmp_path, fresh.url, str(fresh.mint), ready["multiaddrs"][0], busybox_image),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        assert run.returncode != 0
        assert f"this data dir's channels are on chain {genesis}" in run.stderr.decode()
        reclaim = await trio.run_process(
            reclaim_args(tmp_path, fresh.url),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        assert reclaim.returncode != 0 and b"closed" not in reclaim.stdout
        assert f"this data dir's channels are on chain {genesis}" in reclaim.stderr.decode()

    with serve_node(tmp_path / "chain") as same:  # the first chain, restarted
        chain = RpcChain(same.url)
        assert str(await chain.genesis_hash()) == genesis
        with provider_process([a if a != node.url else same.url for a in args], log_path) as proc:
            await ready_line(proc, log_path)  # recovered and serving on its own chain
        reclaim = await trio.run_process(
            reclaim_args(tmp_path, same.url), capture_stdout=True, check=False, cwd=ROOT
        )
        assert reclaim.returncode == 0
        (row,) = json.loads(reclaim.stdout)["channels"]
        assert row["channel"] == channel and row["status"] == "not_yet"
        await chain.aclose()
