"""``dgpu devnet --demo``: a renter runs a sample job end to end, then the money is
accounted for on chain.

1. ``dgpu run --json`` (a renter node, its own process) finds an offer through the
   coordinator, negotiates, funds an escrow channel, runs the job, pays receipts.
2. The coordinator's batcher settles the provider's latest receipt (a round is started
   on demand, as the devnet admin).
3. The local chain's clock is fast-forwarded past the channel's reclaim time (devnet
   only: on a real cluster the renter waits for expiry plus the dispute window), and
   ``dgpu run reclaim`` takes the rest back.
4. Every figure of the summary is read from the chain: provider, treasury and renter
   token balances before and after; paid + fee + refund must equal the deposit.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from dgpu.cli.devnet.parts import DEMO_GPU, Options, Running, run_args
from dgpu.cli.devnet.supervisor import DevnetError, dgpu_command
from dgpu.cli.devnet.wallets import Wallets, key_path
from dgpu.cli.profile import without_profiles
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.localnet import associated_token_address
from dgpu.node.coordinator_client import CoordinatorClient, CoordinatorClientError
from solders.pubkey import Pubkey

log = logging.getLogger(__name__)

SETTLE_WAIT_S = 60.0


@dataclass(frozen=True)
class Balances:
    provider: int
    treasury: int
    renter: int


async def balances(rpc_url: str, mint: Pubkey, provider: str, wallets: Wallets) -> Balances:
    async with RpcChain(rpc_url) as chain:

        async def of(owner: Pubkey) -> int:
            return await chain.get_token_balance(associated_token_address(owner, mint))

        return Balances(
            provider=await of(Pubkey.from_string(provider)),
            treasury=await of(Pubkey.from_bytes(wallets.treasury.public_key)),
            renter=await of(Pubkey.from_bytes(wallets.renter.public_key)),
        )


def _dgpu_json(
    args: list[str], *, what: str, timeout: float, prefix: tuple[str, ...] = ()
) -> dict[str, Any]:
    done = subprocess.run(
        [*prefix, *dgpu_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=without_profiles(os.environ),
    )
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = None
    if done.returncode != 0 or not isinstance(result, dict):
        raise DevnetError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return result


async def settle(running: Running, wallets: Wallets, channel: str) -> list[str]:
    """Ask the coordinator to settle until this channel's receipt is on chain."""
    async with CoordinatorClient.open(running.coordinator_url, wallets.admin) as client:
        with trio.move_on_after(SETTLE_WAIT_S):
            while True:
                try:
                    await client.run_settlement()
                except CoordinatorClientError as exc:
                    log.info("settlement round not started: %s", exc)  # look again below
                page = await client.settlements(limit=100)
                signatures = [
                    str(batch["signature"])
                    for batch in page["batches"]
                    if batch["state"] == "confirmed"
                    and any(item["channel"] == channel for item in batch["items"])
                ]
                if signatures:
                    return signatures
                await trio.sleep(1)
    raise DevnetError(f"the coordinator did not settle channel {channel} in {SETTLE_WAIT_S:.0f}s")


async def warp_chain(rpc_url: str, seconds: int) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "dgpu_warp", "params": [seconds]}
        (await http.post(rpc_url, json=body)).raise_for_status()


async def chain_time(rpc_url: str) -> int:
    async with RpcChain(rpc_url) as chain:
        return await chain.unix_time()


def run_demo(options: Options, running: Running, wallets: Wallets) -> dict[str, Any]:
    state = options.state_dir
    provider_guess = running.provider_addresses[0]
    before = trio.run(balances, running.rpc_url, running.mint, provider_guess, wallets)
    renter_host = options.placement.renter  # its own host with --hosts, else here
    job = _dgpu_json(
        run_args(options, running, as_json=True),
        what="the demo job",
        timeout=300,
        prefix=renter_host,
    )
    if job.get("state") != "succeeded":
        raise DevnetError(f"the demo job ended {job.get('state')}: {job.get('detail')}")
    provider = str(job["provider"])
    if provider != provider_guess:
        raise DevnetError(f"the demo job ran on {provider}, expected {provider_guess}")
    signatures = trio.run(settle, running, wallets, str(job["channel"]))

    now = trio.run(chain_time, running.rpc_url)
    wait = max(0, int(job["reclaimable_at"]) - now + 1)
    if wait:
        trio.run(warp_chain, running.rpc_url, wait)
    reclaimed = _dgpu_json(
        ["run", "reclaim", "--key", str(key_path(state, "renter")),
         "--data-dir", str(state / "renter"), "--rpc", running.rpc_url, "--json"],
        what="reclaiming the rest of the deposit",
        timeout=120,
        prefix=renter_host,
    )  # fmt: skip
    after = trio.run(balances, running.rpc_url, running.mint, provider, wallets)

    deposit = int(job["deposit"])
    summary = {
        "job_id": job["job_id"],
        "provider": provider,
        "gpu": DEMO_GPU,
        "simulated_gpu": True,
        "state": job["state"],
        "seconds_billed": int(job["seconds_billed"]),
        "price_per_gpu_second": int(job["price_per_gpu_second"]),
        "deposit": deposit,
        "amount_signed": int(job["amount_paid"]),
        "paid_to_provider": after.provider - before.provider,
        "platform_fee": after.treasury - before.treasury,
        "refunded_to_renter": after.renter - (before.renter - deposit),
        "settlement_signatures": signatures,
        "reclaim_signatures": [
            str(c["signature"]) for c in reclaimed["channels"] if c.get("signature")
        ],
        "channel": job["channel"],
        "chain_clock_warped_s": wait,
        "outputs": job["outputs"],
        # how the renter reached the provider when the outputs moved
        "connection": job.get("connection"),
        "explorer_url": running.explorer_url,
    }
    total = summary["paid_to_provider"] + summary["platform_fee"] + summary["refunded_to_renter"]
    if total != deposit:
        raise DevnetError(
            f"money does not add up: paid + fee + refund = {total}, deposit {deposit}"
        )
    if summary["paid_to_provider"] + summary["platform_fee"] != summary["amount_signed"]:
        raise DevnetError("the provider and the treasury did not receive what the renter signed")
    return summary
