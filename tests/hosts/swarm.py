"""A dgpu swarm spread over a :class:`~dgpu.cli.devnet.netlab.Topology`: the chain and the
bootstrap peer on the public server host (reached by its address, never loopback), a
provider and a renter on their own hosts, each a real ``dgpu`` process started inside
its namespace. The lab stops every process and removes every namespace on close."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from dgpu.cli.devnet.netlab import Host, Topology
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import Node
from tests.fixtures_docker import TEST_IMAGE
from tests.node.clikit import (
    PRICE_PER_HOUR,
    ROOT,
    LocalChain,
    dgpu,
    local_chain,
)

START_TIMEOUT_S = 90.0
CHAIN_PORT = 8899
BOOTSTRAP_PORT = 4001
COORDINATOR_PORT = 8080
SETTLE_EVERY_S = 2


def read_json_line(proc: subprocess.Popen[str], log: Path, timeout_s: float) -> dict[str, Any]:
    """The next JSON line of ``proc``'s stdout (its stderr goes to ``log``)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            info: dict[str, Any] = json.loads(line)
            return info
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise AssertionError(f"{proc.args!r} did not report ready (exit {proc.poll()}):\n{tail}")


def start(host: Host, args: list[str], log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        return host.popen(
            dgpu(*args),
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )


@dataclass
class Swarm:
    topology: Topology
    tmp: Path
    chain: Node
    world: LocalChain
    bootstrap: str
    """Full multiaddr of the bootstrap peer (on the server host's public address)."""
    coordinator_url: str | None = None
    """The coordinator on the server host (``open_swarm(coordinator=True)``): offers
    found through its index, receipts settled by its batcher — the normal path."""

    def provider_args(self, identity: Identity, *extra: str) -> list[str]:
        key = self.tmp / "provider.json"
        save_identity(identity, key)
        return [
            *("--key", str(key), "--data-dir", str(self.tmp / "provider-data")),
            *("--rpc", self.chain.url, "--mint", str(self.chain.mint)),
            *("--gpus", "1xRTX 4090", "--json", "--allow-image", TEST_IMAGE),
            *("--interval", "1", "--grace", "5", "--price", PRICE_PER_HOUR),
            *("--max-duration", "600", "--offer-ttl", "120"),
            *("--bootstrap", self.bootstrap),
            *(("--coordinator", self.coordinator_url) if self.coordinator_url else ()),
            *extra,
        ]

    def start_provider(self, identity: Identity, *extra: str) -> subprocess.Popen[str]:
        return start(
            self.topology.provider,
            ["-v", "provider", "start", *self.provider_args(identity, *extra)],
            self.tmp / "provider.log",
        )

    async def run_job(
        self, renter: Identity, command: str, *extra: str
    ) -> tuple[int, dict[str, Any], str]:
        """``dgpu run --p2p`` on the renter host; (exit code, JSON result, stderr)."""
        key = self.tmp / "renter.json"
        save_identity(renter, key)
        argv = dgpu(
            "-v",
            "run",
            *("--key", str(key), "--data-dir", str(self.tmp / "renter-data")),
            *("--rpc", self.chain.url, "--mint", str(self.chain.mint)),
            "--bootstrap",
            self.bootstrap,
            # with a coordinator, its index finds the offers; without, the DHT
            *(("--coordinator", self.coordinator_url) if self.coordinator_url else ("--p2p",)),
            *("--gpu", "RTX 4090", "--max-price", "8", "--image", TEST_IMAGE),
            *("--duration", "120", "--output-dir", str(self.tmp / "outputs"), "--json"),
            *extra,
            "--",
            *("sh", "-c", command),
        )
        done = await trio.run_process(
            ["ip", "netns", "exec", self.topology.renter.ns, *argv],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        stderr = done.stderr.decode()
        (self.tmp / "renter.log").write_text(stderr)
        result = json.loads(done.stdout) if done.stdout.strip().startswith(b"{") else {}
        return done.returncode, result, stderr


async def open_swarm(
    topology: Topology, tmp: Path, *bootstrap_args: str, coordinator: bool = False
) -> Swarm:
    """Chain and bootstrap (and with ``coordinator``, the coordinator) on the server
    host; the test's own chain client reaches the chain over the lab (the root
    namespace's seat on the lab's internet)."""
    server = topology.server
    chain_log = tmp / "chain.log"
    chain_proc = start(
        server,
        [
            "chain",
            "serve",
            "--host",
            server.ip,
            "--port",
            str(CHAIN_PORT),
            "--json",
            "--state-dir",
            str(tmp / "chain"),
        ],
        chain_log,
    )
    info = read_json_line(chain_proc, chain_log, START_TIMEOUT_S)
    assert server.ip in info["rpc_url"], info
    from solders.pubkey import Pubkey

    node = Node(
        url=info["rpc_url"],
        mint=Pubkey.from_string(info["mint"]),
        mint_authority_keyfile=Path(info["mint_authority_keyfile"]),
        program_id=None,
        state_dir=Path(info["state_dir"]),
        process=chain_proc,
    )
    boot_log = tmp / "bootstrap.log"
    boot_key = tmp / "bootstrap.json"
    save_identity(Identity.generate(), boot_key)
    boot = start(
        server,
        [
            "-v",
            "bootstrap",
            "serve",
            "--key",
            str(boot_key),
            "--json",
            "--listen",
            f"/ip4/{server.ip}/tcp/{BOOTSTRAP_PORT}",
            *bootstrap_args,
        ],
        boot_log,
    )
    boot_info = read_json_line(boot, boot_log, START_TIMEOUT_S)
    world = await local_chain(node)
    swarm = Swarm(topology, tmp, node, world, boot_info["multiaddr"])
    if coordinator:
        swarm.coordinator_url = await _start_coordinator(swarm)
    return swarm


async def _start_coordinator(swarm: Swarm) -> str:
    """``dgpu coordinator serve`` on the server host, its settler key funded (fees)."""
    server, tmp = swarm.topology.server, swarm.tmp
    settler = Identity.generate()
    await swarm.world.fund(settler)
    key = tmp / "coordinator.json"
    save_identity(settler, key)
    log = tmp / "coordinator.log"
    proc = start(
        server,
        [
            *("-v", "coordinator", "serve", "--json"),
            *("--listen", f"{server.ip}:{COORDINATOR_PORT}", "--db", str(tmp / "coord.db")),
            *("--rpc", swarm.chain.url, "--mint", str(swarm.chain.mint), "--key", str(key)),
            *("--settle-every", str(SETTLE_EVERY_S)),
        ],
        log,
    )
    info = read_json_line(proc, log, START_TIMEOUT_S)
    url = str(info["url"])
    assert server.ip in url, info
    return url
