"""Start the parts of a devnet in order, each a ``dgpu`` child process.

chain (LiteSVM over JSON-RPC) -> money (wallets, dGPU, escrow config) -> coordinator
-> bootstrap peer (relaying gossiped offers to the coordinator) -> N providers.

Every part listens on a port fixed in advance (:mod:`dgpu.cli.devnet.ports`) and keeps its
state in the devnet's state directory, so the supervisor can restart any of them with the
same command line. A restarted chain gets its wallets funded and the escrow configured
again (both idempotent) so that new jobs can run whatever the chain kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from dgpu.cli.devnet.ports import HOST, Ports
from dgpu.cli.devnet.supervisor import Supervisor
from dgpu.cli.devnet.wallets import Wallets, ensure_escrow_config, fund, key_path
from dgpu.cli.profile import Value
from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.deploy import deploy_escrow
from dgpu.contracts_client.localnet import DGPU_DECIMALS, TokenMint
from dgpu.contracts_client.rpc_server import MINT_AUTHORITY_FILE
from dgpu.protocol.keyfile import load_identity
from solders.pubkey import Pubkey

log = logging.getLogger(__name__)

# A realistic mix of simulated GPUs, cycled over the providers.
GPU_MIX = ("1xRTX 4090", "1xA100", "2xRTX 4080", "1xH100", "2xRTX 4090", "1xM3 Ultra")
DEMO_IMAGE = "dgpu/busybox:latest"
DEMO_GPU = "RTX 4090"  # provider-0's model in GPU_MIX
DEMO_SCRIPT = (
    "echo hello from a rented GPU; for i in 1 2 3 4 5 6; do echo step $i; sleep 1; done; "
    "echo done > /out/result.txt"
)


@dataclass(frozen=True)
class Placement:
    """Where the parts run: all on loopback here (the default), or on the hosts of a
    network lab (``dgpu devnet --hosts``): chain, coordinator and bootstrap on a public
    server host, the providers on a host of their own (behind the topology's NAT), the
    demo's renter on a third. A prefix (``ip netns exec <ns>``) runs a part on its host."""

    server_ip: str = HOST
    provider_ip: str = HOST
    server: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    renter: tuple[str, ...] = ()
    topology: str | None = None
    """The lab's topology; None on loopback."""


@dataclass(frozen=True)
class Options:
    state_dir: Path
    providers: int
    executor: str  # "docker" or "local"
    ports: Ports
    interval_s: int = 2
    grace_s: int = 6
    settle_every_s: float = 5.0
    placement: Placement = Placement()


@dataclass(frozen=True)
class Running:
    rpc_url: str
    mint: Pubkey
    coordinator_url: str
    bootstrap: str
    explorer_url: str
    provider_addresses: tuple[str, ...]


def _mint(ready: dict[str, Any]) -> TokenMint:
    authority = load_identity(Path(ready["mint_authority_keyfile"])).to_solders()
    return TokenMint(Pubkey.from_string(ready["mint"]), authority, DGPU_DECIMALS)


def _chain_restarted(wallets: Wallets, ready: dict[str, Any]) -> None:
    # Raises DgpuError (chain, escrow client), which the supervisor shows.
    trio.run(prepare_money, str(ready["rpc_url"]), wallets, _mint(ready))


def start_chain(sup: Supervisor, options: Options, wallets: Wallets) -> tuple[str, TokenMint]:
    ready = sup.start(
        "chain",
        [
            "chain", "serve",
            "--host", options.placement.server_ip,
            "--port", str(options.ports.chain),
            "--state-dir", str(options.state_dir / "chain"),
            "--no-escrow",  # deployed below through the upgradeable loader, as on a cluster
            "--json",
        ],
        on_restart=partial(_chain_restarted, wallets),
        prefix=options.placement.server,
    ).ready  # fmt: skip
    return str(ready["rpc_url"]), _mint(ready)


async def prepare_money(rpc_url: str, wallets: Wallets, mint: TokenMint) -> None:
    async with RpcChain(rpc_url) as chain:
        await fund(chain, wallets, mint)
        deployed = await deploy_escrow(chain, wallets.admin.to_solders())
        log.info(
            "escrow %s at %s",
            "found" if deployed.already_deployed else "deployed",
            deployed.program_id,
        )
        await ensure_escrow_config(chain, wallets, mint)


def start_network(sup: Supervisor, options: Options, wallets: Wallets) -> Running:
    state, place = options.state_dir, options.placement
    rpc_url, mint = start_chain(sup, options, wallets)
    trio.run(prepare_money, rpc_url, wallets, mint)

    coordinator = sup.start(
        "coordinator",
        [
            "coordinator", "serve",
            "--listen", f"{place.server_ip}:{options.ports.coordinator}",
            "--db", str(state / "coordinator.db"),
            "--rpc", rpc_url,
            "--key", str(key_path(state, "coordinator")),
            "--settle-every", str(options.settle_every_s),
            "--snapshot-every", "10",
            "--admin", wallets.admin.address,
            "--relay", wallets.bootstrap.address,
            "--mint", str(mint.address),
            "--json",
        ],
        prefix=place.server,
    ).ready  # fmt: skip
    coordinator_url = str(coordinator["url"])

    bootstrap = sup.start(
        "bootstrap",
        [
            "bootstrap", "serve",
            "--listen", f"/ip4/{place.server_ip}/tcp/{options.ports.bootstrap}",
            "--key", str(key_path(state, "bootstrap")),
            "--index", coordinator_url,
            "--json",
        ],
        prefix=place.server,
    ).ready  # fmt: skip
    bootstrap_addr = str(bootstrap["multiaddr"])

    for i in range(options.providers):
        # on loopback the outputs take a plain TCP channel; across hosts libp2p streams
        # (Noise, over whatever connection exists: direct or through the relay)
        bulk = () if place.topology else ("--bulk-listen", f"{HOST}:{options.ports.bulk[i]}")
        sup.start(
            f"provider-{i}",
            [
                "provider", "start",
                "--key", str(key_path(state, f"provider-{i}")),
                "--data-dir", str(state / f"provider-{i}"),
                "--listen", f"/ip4/{place.provider_ip}/tcp/{options.ports.providers[i]}",
                *bulk,
                "--bootstrap", bootstrap_addr,
                "--rpc", rpc_url,
                "--mint", str(mint.address),
                "--coordinator", coordinator_url,
                "--gpu-backend", "auto",
                "--gpus", GPU_MIX[i % len(GPU_MIX)],
                "--region", "local",
                "--allow-image", DEMO_IMAGE,
                "--max-duration", "3600",
                "--interval", str(options.interval_s),
                "--grace", str(options.grace_s),
                "--executor", options.executor,
                "--json",
            ],
            timeout=120,
            prefix=place.provider,
        )  # fmt: skip
    return Running(
        rpc_url=rpc_url,
        mint=mint.address,
        coordinator_url=coordinator_url,
        bootstrap=bootstrap_addr,
        explorer_url=coordinator_url + "/",
        provider_addresses=tuple(p.address for p in wallets.providers),
    )


def profile_values(options: Options, running: Running) -> dict[str, Value]:
    """The ``devnet`` profile: this devnet's network and its renter's wallet."""
    state = options.state_dir
    return {
        "rpc": running.rpc_url,
        "program_id": str(PROGRAM_ID),  # deploy_escrow's default key (prepare_money)
        "mint": str(running.mint),
        "coordinator": running.coordinator_url,
        "bootstrap": [running.bootstrap],
        "key": str(key_path(state, "renter")),
        "data_dir": str(state / "renter"),
        "output_dir": str(state / "renter" / "outputs"),
        "max_price": "3",
        "duration": 60,
        "mint_authority": str(state / "chain" / MINT_AUTHORITY_FILE),
    }


def short_run_args(profile: str | None) -> list[str]:
    """``dgpu run`` with the devnet's profile: only what the job is."""
    chosen = ["--profile", profile] if profile else []
    return ["run", *chosen, "--gpu", DEMO_GPU, "--image", DEMO_IMAGE, "--", "sh", "-c", DEMO_SCRIPT]


def run_args(options: Options, running: Running, *, as_json: bool = False) -> list[str]:
    """Arguments of the ``dgpu run`` a user can paste to try the devnet (every flag)."""
    state = options.state_dir
    return [
        "run",
        "--key", str(key_path(state, "renter")),
        "--data-dir", str(state / "renter"),
        "--rpc", running.rpc_url,
        "--mint", str(running.mint),
        "--coordinator", running.coordinator_url,
        "--bootstrap", running.bootstrap,
        "--gpu", DEMO_GPU,
        "--max-price", "3",
        "--image", DEMO_IMAGE,
        "--duration", "60",
        "--output-dir", str(state / "renter" / "outputs"),
        *(["--json"] if as_json else []),
        "--",
        "sh", "-c", DEMO_SCRIPT,
    ]  # fmt: skip
