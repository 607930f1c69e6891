"""``dgpu chain deploy`` through the upgradeable loader against ``dgpu chain serve``
standing in for a cluster (started without the escrow): the program lands with its
ProgramData, the bytes match the shipped sha256, the escrow runs from it, and a second
deploy of the same bytes sends nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from dgpu.contracts import PROGRAM_ID, so_path, so_sha256
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.deploy import LOADER_V3, parse_programdata, programdata_address
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from solders.keypair import Keypair

from tests.contracts_client.support import SOL, funded, serve_node


def _deploy(url: str, keyfile: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgpu.cli.main",
            "chain",
            "deploy",
            "--url",
            url,
            "--keypair",
            str(keyfile),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_deploy_through_the_upgradeable_loader(tmp_path: Path) -> None:
    keyfile = tmp_path / "deployer.json"
    save_identity(Identity.generate(), keyfile)
    deployer = load_identity(keyfile).to_solders()
    with serve_node(tmp_path / "chain", "--no-escrow") as node:
        assert node.program_id is None

        async def fund() -> None:
            async with RpcChain(node.url) as chain:
                await chain.request_airdrop(deployer.pubkey(), 10 * SOL)
                assert await chain.get_account(PROGRAM_ID) is None

        anyio.run(fund)
        first = _deploy(node.url, keyfile)
        assert first["program_id"] == str(PROGRAM_ID)
        assert first["programdata"] == str(programdata_address(PROGRAM_ID))
        assert first["authority"] == str(deployer.pubkey())
        assert first["sha256"] == so_sha256() and first["already_deployed"] is False
        elf = so_path().read_bytes()
        assert isinstance(first["signatures"], list)
        assert len(first["signatures"]) == 2 + (len(elf) + 1011) // 1012

        async def check() -> None:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                program = await chain.get_account(PROGRAM_ID)
                assert program is not None and program.executable and program.owner == LOADER_V3
                data = await chain.get_account(programdata_address(PROGRAM_ID))
                assert data is not None
                parsed = parse_programdata(bytes(data.data))
                assert parsed.elf[: len(elf)] == elf and parsed.authority == deployer.pubkey()
                assert len(parsed.elf) == 2 * len(elf)  # headroom for a larger build
                # the deployed escrow runs: initialize, then open a channel
                authority = load_identity(node.mint_authority_keyfile).to_solders()
                mint = localnet.TokenMint(node.mint, authority)
                escrow = EscrowClient(chain)
                await escrow.initialize(deployer, treasury=Keypair().pubkey(), mints=[node.mint])
                renter = await funded(chain, SOL)
                await localnet.fund_wallet(chain, renter.pubkey(), mint=mint, tokens=10)
                opened = await escrow.open_channel(
                    renter,
                    provider=Keypair().pubkey(),
                    mint=node.mint,
                    deposit=10,
                    expiry=await chain.unix_time() + 3600,
                )
                assert opened.state.deposit == 10

        anyio.run(check)
        again = _deploy(node.url, keyfile)
        assert again["already_deployed"] is True and again["signatures"] == []

    # after a kill -9 and a restart the loader-v3 program (ProgramData restored before
    # its Program account) still runs
    with serve_node(tmp_path / "chain", "--no-escrow") as node:
        node.process.kill()
        node.process.wait()
    with serve_node(tmp_path / "chain", "--no-escrow") as node:

        async def after_restart() -> None:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                escrow = EscrowClient(chain)
                config = await escrow.read_config()
                assert config.admin == deployer.pubkey()
                authority = load_identity(node.mint_authority_keyfile).to_solders()
                renter = await funded(chain, SOL)
                mint = localnet.TokenMint(node.mint, authority)
                await localnet.fund_wallet(chain, renter.pubkey(), mint=mint, tokens=10)
                opened = await escrow.open_channel(
                    renter,
                    provider=Keypair().pubkey(),
                    mint=node.mint,
                    deposit=10,
                    expiry=await chain.unix_time() + 3600,
                )
                assert opened.state.deposit == 10

        anyio.run(after_restart)
