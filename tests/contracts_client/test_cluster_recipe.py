"""The README's "A real Solana cluster" recipe, its commands read from the README itself,
run against ``dgpu chain serve --no-escrow`` standing in for the cluster: 1. a fresh
program key from ``dgpu keys new`` and ``dgpu chain deploy`` under it, exactly as written
(placeholders filled in); 2. the config initialised with ``EscrowClient(chain,
program_id=...).initialize`` signed by the upgrade authority; 3. nodes pointed at it with
``--rpc URL --program-id ID --mint MINT``: ``dgpu wallet balance`` reads, and ``dgpu
provider settle`` is paid by the program that step 1 deployed. The same settle without
``--program-id`` (the shipped key's id, not deployed there) or with a malformed one is
refused in words and moves nothing. A README edit that breaks the recipe fails here."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from dgpu.contracts import PROGRAM_ID, so_sha256
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.instructions import DEFAULT_FEE_BPS
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.contracts_client.support import SOL, serve_node

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"
RPC_PLACEHOLDER = "https://<your RPC endpoint>"
DEPOSIT = 5 * 10**9
CUMULATIVE = 1_500_000_000


def recipe() -> tuple[str, str, str]:
    """The section, its key and deploy commands and its node flags, as the README has them."""
    text = README.read_text()
    match = re.search(r"^## A real Solana cluster\n(.*?)^## ", text, re.S | re.M)
    assert match, "the README has no '## A real Solana cluster' section"
    section = match.group(1)
    commands = [" ".join(c.split()) for c in re.findall(r"`([^`]+)`", section)]
    (new_key,) = [c for c in commands if c.startswith("dgpu keys new")]
    (deploy,) = [c for c in commands if c.startswith("dgpu chain deploy")]
    (flags,) = [c for c in commands if c.startswith("--rpc ")]
    assert "EscrowClient(chain, program_id=...).initialize" in section
    return new_key, deploy, flags


def attempt(command: str, **fill: str) -> subprocess.CompletedProcess[str]:
    """``command`` (placeholders filled in) as a user would type it."""
    for placeholder, value in fill.items():
        assert placeholder in command, (placeholder, command)
        command = command.replace(placeholder, value)
    argv = shlex.split(command)
    assert argv[0] == "dgpu" and "<" not in command, command
    return subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", *argv[1:]],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def run(command: str, **fill: str) -> Any:
    done = attempt(command, **fill)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def refused(command: str, **fill: str) -> str:
    """The words a refused command printed (no traceback)."""
    done = attempt(command, **fill)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    return " ".join(done.stderr.split())


def test_the_readme_cluster_recipe(tmp_path: Path) -> None:
    new_key, deploy, flags = recipe()
    payer_id = Identity.generate()
    payer_file = tmp_path / "payer.json"
    save_identity(payer_id, payer_file)
    payer = payer_id.to_solders()
    with serve_node(tmp_path / "cluster", "--no-escrow") as cluster:
        assert cluster.program_id is None  # nothing deployed: a cluster without our program
        mint_authority = load_identity(cluster.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(cluster.mint, mint_authority)

        async def fund_payer() -> None:
            async with RpcChain(cluster.url, poll_interval=0.05) as chain:
                await chain.request_airdrop(payer.pubkey(), 10 * SOL)

        anyio.run(fund_payer)
        # 1. a fresh program key and the deploy command under it, word for word
        program_file = tmp_path / "program.json"
        made = run(new_key, **{"<program.json>": str(program_file)})
        program_id = Pubkey.from_string(made["address"])
        assert program_id != PROGRAM_ID
        deployed = run(
            deploy,
            **{
                RPC_PLACEHOLDER: cluster.url,
                "<payer.json>": str(payer_file),
                "<program.json>": str(program_file),
            },
        )
        assert deployed["program_id"] == str(program_id) and deployed["sha256"] == so_sha256()
        assert deployed["authority"] == str(payer.pubkey()) and deployed["signatures"]

        # 2. the config, once, signed by the upgrade authority (the payer of step 1)
        provider_id, renter_id = Identity.generate(), Identity.generate()
        provider, renter = provider_id.to_solders(), renter_id.to_solders()

        async def initialize_and_open() -> Receipt:
            async with RpcChain(cluster.url, poll_interval=0.05) as chain:
                escrow = EscrowClient(chain, program_id=program_id)
                treasury = Keypair()
                await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
                await escrow.initialize(payer, treasury=treasury.pubkey(), mints=[cluster.mint])
                await localnet.fund_wallet(chain, provider.pubkey(), lamports=SOL, mint=mint)
                await localnet.fund_wallet(
                    chain, renter.pubkey(), lamports=SOL, mint=mint, tokens=DEPOSIT
                )
                opened = await escrow.open_channel(
                    renter, provider=provider.pubkey(), mint=cluster.mint, deposit=DEPOSIT,
                    expiry=await chain.unix_time() + 3600,
                )  # fmt: skip
                state = opened.state
                receipt = Receipt(
                    job_id=bytes(state.address)[:16], seq=1, renter=renter_id.public_key,
                    program_id=bytes(program_id), channel=bytes(state.address),
                    open_nonce=state.open_nonce, cumulative=CUMULATIVE,
                )  # fmt: skip
                return sign_receipt(receipt, renter_id)

        receipt = anyio.run(initialize_and_open)

        # 3. nodes pointed at the cluster and the program with the README's flags
        node_flags = {
            RPC_PLACEHOLDER: cluster.url,
            "<program id>": str(program_id),
            "<mint>": str(cluster.mint),
        }
        provider_key = tmp_path / "provider.json"
        save_identity(provider_id, provider_key)
        balance = run(f"dgpu wallet balance --key {provider_key} {flags} --json", **node_flags)
        assert balance["dgpu"] == 0 and balance["lamports"] == SOL
        data = tmp_path / "provider"
        data.mkdir()
        with NodeStore.open(data / "node.sqlite") as store:
            assert store.save_receipt("provider", receipt, now=1)
        chain_flags = flags.split(" --mint")[0]  # settle takes no mint: the receipt names it
        assert "--program-id <program id>" in chain_flags
        settle = f"dgpu provider settle --key {provider_key} --data-dir {data} {{}} --json"
        chain_fill = {k: v for k, v in node_flags.items() if k != "<mint>"}
        # the same settle with the shipped program id (not deployed here) or a malformed
        # one is refused in words before anything is sent
        shipped = chain_flags.replace(" --program-id <program id>", "")
        said = refused(settle.format(shipped), **{RPC_PLACEHOLDER: cluster.url})
        assert f"no escrow program at {PROGRAM_ID}" in said and "--program-id" in said, said
        said = refused(
            settle.format(shipped) + " --program-id n0t-base58", **{RPC_PLACEHOLDER: cluster.url}
        )
        assert "--program-id" in said and "is not a base58 address" in said, said
        settled = run(settle.format(chain_flags), **chain_fill)
        # a coordinator given the shipped program id refuses to settle on this cluster too
        coordinator = (
            f"dgpu coordinator serve --listen 127.0.0.1:0 --db {tmp_path / 'coordinator.sqlite'}"
            f" --key {provider_key} --no-probe {shipped}"
        )
        said = refused(coordinator, **{RPC_PLACEHOLDER: cluster.url})
        assert f"no escrow program at {PROGRAM_ID}" in said, said
        assert [row["status"] for row in settled["settlements"]] == ["settled"]
        after = run(f"dgpu wallet balance --key {provider_key} {flags} --json", **node_flags)
        # paid by the deployed program: the receipt minus the config's (default) fee, once
    assert after["dgpu"] == CUMULATIVE - CUMULATIVE * DEFAULT_FEE_BPS // 10_000
