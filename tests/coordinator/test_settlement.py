"""Settlement through the real escrow program in LiteSVM: many channels of several
providers in batches, safe retries, a crash between submit and record, bad receipts
isolated, and the intake check against the chain."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import msgspec
import pytest
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.money import ChainEscrow, ChainUnavailable, ChannelState, Settled
from dgpu.contracts_client.settlement import Settlement, receipts_per_transaction
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.settlement import CoordinatorSettler as Settler
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.coordinator.store import ChannelKey, open_store
from dgpu.node.coordinator_client import CoordinatorClientError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from prometheus_client.parser import text_string_to_metric_families

from tests.coordinator.conftest import (
    ADMIN,
    ManualClock,
    Server,
    client_for,
    make_config,
    running_server,
)
from tests.coordinator.escrow_world import DGPU, World, make_world, net_of


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class TimeoutAfterSubmit(ChainEscrow):
    """The batch lands, but its confirmation "times out" (the first time only)."""

    tripped = False

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        settled = await super().settle(payer, receipts)
        if not self.tripped:
            self.tripped = True
            raise ChainUnavailable("confirmation timed out")
        return settled


class UnreachableOnce(ChainEscrow):
    """The first batch never reaches the chain, and the chain cannot be read right after."""

    failures = 0

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        if self.failures == 0:
            self.failures = 1
            raise ChainUnavailable("connection refused")
        return await super().settle(payer, receipts)

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        if self.failures == 1:
            self.failures = 2
            raise ChainUnavailable("connection refused")
        return await super().read_channels(channels)


class CrashAfterSubmit(ChainEscrow):
    """Lands the batch on chain, then "dies" before the coordinator records it."""

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        await super().settle(payer, receipts)
        raise SimulatedCrash


def backend(world: World, escrow: type[ChainEscrow] = ChainEscrow) -> SettlementBackend:
    """The coordinator's escrow over the world's chain, paid by its settler key."""
    return SettlementBackend(escrow(world.escrow), world.settler)


@pytest.fixture(scope="module")
def world() -> World:
    async def build() -> World:
        return await make_world(LiteSVMChain(), providers=3, renters=2, label="settle")

    return asyncio.run(build())


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, world: World, database_url: str | None
) -> Iterator[Server]:
    config = make_config(
        tmp_path_factory.mktemp("settle"),
        admins=frozenset({ADMIN.address}),
        database_url=database_url,
    )
    with running_server(config, backend=backend(world), clock=ManualClock()) as running:
        yield running


async def test_many_channels_of_several_providers_settle_in_batches(
    server: Server, world: World
) -> None:
    owed: dict[str, int] = {p.address: 0 for p in world.providers}
    channels = []
    for k in range(12):
        provider = world.providers[k % 3]
        renter = world.renters[k % 2]
        channel = await world.open(renter, provider, deposit=5 * DGPU)
        channels.append((renter, provider, channel))
    before = {p.address: await world.balance(p) for p in world.providers}
    for k, (renter, provider, channel) in enumerate(channels):
        cumulative = (k + 1) * 10_000_000
        async with client_for(server, provider) as client:
            assert (await client.post_receipt(world.receipt(renter, channel, cumulative // 2)))[
                "status"
            ] == "created"
            assert (await client.post_receipt(world.receipt(renter, channel, cumulative, 2)))[
                "status"
            ] == "raised"
        owed[provider.address] += net_of(cumulative)

    async with client_for(server, ADMIN) as admin:
        report = await admin.run_settlement()
        page = await admin.settlements(limit=50)
        again = await admin.run_settlement()

    per_tx = receipts_per_transaction(with_lookup_table=True)
    assert report["channels_settled"] == 12
    assert report["batches"] == report["confirmed"] == -(-12 // per_tx)
    assert report["amount"] == sum((k + 1) * 10_000_000 for k in range(12))
    assert again["batches"] == 0
    for provider in world.providers:
        assert await world.balance(provider) - before[provider.address] == owed[provider.address]
    assert {b["state"] for b in page["batches"]} == {"confirmed"}
    assert all(len(b["items"]) <= per_tx for b in page["batches"])
    assert page["pending_channels"] == 0
    for batch in page["batches"]:
        assert len(batch["signature"]) > 80  # a base58 transaction signature, recorded
        for item in batch["items"]:
            assert item["settled_before"] == 0
            assert item["settled_after"] == item["cumulative"]

    # A higher receipt later settles only the difference.
    renter, provider, channel = channels[0]
    paid_before = await world.balance(provider)
    async with client_for(server, provider) as client:
        await client.post_receipt(world.receipt(renter, channel, 30_000_000, 3))
    async with client_for(server, ADMIN) as admin:
        third = await admin.run_settlement()
    assert third["channels_settled"] == 1
    assert third["amount"] == 30_000_000 - 10_000_000
    assert await world.balance(provider) - paid_before == net_of(20_000_000)
    async with client_for(server) as client:
        profile = await client.provider(provider.address)
    assert profile["totals"]["settled"] == sum(
        c.settled
        for c in [await world.escrow.read_channel(ch.address) for _, p, ch in channels]
        if c is not None and str(c.provider) == provider.address
    )
    assert profile["parts"]["volume"] > 0
    async with httpx.AsyncClient(base_url=server.url) as http:
        metrics = (await http.get("/metrics")).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    confirmed = report["batches"] + third["batches"]
    batches_key = ("dgpu_coordinator_settlement_batches_total", (("outcome", "confirmed"),))
    assert samples[batches_key] == confirmed
    assert samples[("dgpu_coordinator_receipts_pending", ())] == 0
    assert samples[("dgpu_coordinator_settled_amount_total", ())] == (
        report["amount"] + third["amount"]
    )


async def test_intake_checks_the_channel_on_chain(server: Server, world: World) -> None:
    renter, provider, intruder = world.renters[0], world.providers[0], world.providers[1]
    channel = await world.open(renter, provider, deposit=DGPU)
    receipt = world.receipt(renter, channel, 1000)
    async with client_for(server, intruder) as client:
        with pytest.raises(CoordinatorClientError) as not_provider:
            await client.post_receipt(receipt)
    ghost = sign_receipt(msgspec.structs.replace(receipt, channel=os.urandom(32)), renter)
    async with client_for(server, provider) as client:
        with pytest.raises(CoordinatorClientError) as unknown:
            await client.post_receipt(ghost)
    assert (not_provider.value.status, not_provider.value.code) == (403, "not_channel_provider")
    assert (unknown.value.status, unknown.value.code) == (422, "unknown_channel")
    assert server.count("channels", "channel = ?", (str(channel.address),)) == 0


async def test_intake_refuses_a_receipt_above_the_deposit(server: Server, world: World) -> None:
    # D1: intake never compared cumulative with the channel's deposit
    renter, provider = world.renters[0], world.providers[2]
    channel = await world.open(renter, provider, deposit=DGPU)
    async with client_for(server, provider) as client:
        with pytest.raises(CoordinatorClientError) as above:
            await client.post_receipt(world.receipt(renter, channel, DGPU + 1))
        await client.post_receipt(world.receipt(renter, channel, DGPU))
    assert (above.value.status, above.value.code) == (422, "above_deposit")
    assert server.count("channels", "channel = ?", (str(channel.address),)) == 1


async def test_a_batch_is_checked_on_chain_receipt_by_receipt(server: Server, world: World) -> None:
    renter, provider = world.renters[1], world.providers[2]
    good, greedy = [await world.open(renter, provider, deposit=DGPU) for _ in range(2)]
    async with client_for(server, provider) as client:
        results = await client.post_receipts(
            [world.receipt(renter, good, 2000), world.receipt(renter, greedy, DGPU + 1)]
        )
    assert [r["status"] for r in results] == ["accepted", "refused"]
    assert results[1]["code"] == "above_deposit"
    assert server.count("channels", "channel = ?", (str(good.address),)) == 1
    assert server.count("channels", "channel = ?", (str(greedy.address),)) == 0


class Unreadable(ChainEscrow):
    """A chain that cannot be read (down, or partitioned from the coordinator)."""

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        raise ChainUnavailable("connection refused")


async def test_intake_refuses_what_it_cannot_check_on_chain(tmp_path: Path, world: World) -> None:
    # D1: a receipt whose channel could not be read was admitted unchecked
    renter, provider = world.renters[1], world.providers[0]
    channel = await world.open(renter, provider, deposit=DGPU)
    config = make_config(tmp_path)
    with running_server(config, backend=backend(world, Unreadable), clock=ManualClock()) as srv:
        async with client_for(srv, provider) as client:
            with pytest.raises(CoordinatorClientError) as refused:
                await client.post_receipt(world.receipt(renter, channel, 1000))
        assert (refused.value.status, refused.value.code) == (503, "chain_unavailable")
        assert srv.count("channels") == 0


def test_crash_between_submit_and_record_is_reconciled_without_double_payment(
    fresh_store: Path | str,
) -> None:
    asyncio.run(_crash_scenario(fresh_store))


async def _crash_scenario(db_path: Path | str) -> None:
    world = await make_world(LiteSVMChain(), providers=2, renters=1, label="crash")
    renter = world.renters[0]
    channels = [
        await world.open(renter, p, deposit=DGPU) for p in world.providers for _ in range(3)
    ]
    clock = ManualClock()
    payer = world.settler.to_solders()
    async with open_store(db_path) as store:
        for channel in channels:
            provider = next(p for p in world.providers if p.address == str(channel.provider))
            receipt = world.receipt(renter, channel, 100_000_000)
            await store.channels.ingest(receipt, b"", provider=provider.address, now=int(clock()))
        crashing = Settler(store, backend(world, CrashAfterSubmit), Metrics(), clock=clock)
        with pytest.raises(SimulatedCrash):
            await crashing.run_once()
        assert (await store.channels.batch_counts()) == {"pending": 1}
    landed = {p.address: await world.balance(p) for p in world.providers}
    assert sum(landed.values()) > 0  # the first batch did land on chain

    async with open_store(db_path) as store:  # "restart"
        settler = Settler(store, backend(world), Metrics(), clock=clock)
        assert await settler.reconcile() == 1
        counts = await store.channels.batch_counts()
        assert counts == {"reconciled": 1}
        report = await settler.run_once()
        assert report.skipped.get("already_settled", 0) == 0
        assert report.channels_settled == len(channels) - receipts_per_transaction(
            with_lookup_table=True
        )
        final = await settler.run_once()
        assert final.batches == 0
        pending, _ = await store.channels.count_pending()
        assert pending == 0
    for provider in world.providers:
        assert await world.balance(provider) == 3 * net_of(100_000_000)
    # Resubmitting a settled receipt pays nothing: the on-chain mark already covers it.
    states = [await world.escrow.read_channel(c.address) for c in channels]
    assert all(s.settled == 100_000_000 for s in states)
    again = [
        Settlement.for_channel(s, 100_000_000, world.receipt(renter, s, 100_000_000).sig)
        for s in states[:3]
    ]
    await world.escrow.settle_batch(payer, again)
    for provider in world.providers:
        assert await world.balance(provider) == 3 * net_of(100_000_000)


def test_a_refused_receipt_is_isolated_and_the_rest_settles(fresh_store: Path | str) -> None:
    asyncio.run(_isolation_scenario(fresh_store))


async def _isolation_scenario(db_path: Path | str) -> None:
    chain = LiteSVMChain()
    world = await make_world(chain, providers=3, renters=1, label="isolate")
    renter = world.renters[0]
    # A provider without a token account: the program refuses to pay it.
    lonely = Identity.from_label(f"isolate-no-ata-{os.urandom(4).hex()}")
    await chain.request_airdrop(lonely.to_solders().pubkey(), 10**9)
    providers = [*world.providers, lonely]
    channels = [await world.open(renter, p, deposit=DGPU) for p in providers]
    clock = ManualClock()
    async with open_store(db_path) as store:
        for provider, channel in zip(providers, channels, strict=True):
            receipt = world.receipt(renter, channel, 50_000_000)
            await store.channels.ingest(receipt, b"", provider=provider.address, now=int(clock()))
        settler = Settler(store, backend(world), Metrics(), clock=clock)
        report = await settler.run_once()
        assert report.channels_settled == 3
        assert report.skipped == {"rejected": 1}
        row = await store.channels.get(
            ChannelKey(str(channels[-1].address), channels[-1].open_nonce)
        )
        assert row is not None and row["state"] == "rejected"
        assert "BadTokenAccount" in row["note"]
    for provider in world.providers:
        assert await world.balance(provider) == net_of(50_000_000)


def test_chain_trouble_mid_round_is_reconciled_and_retried(fresh_store: Path | str) -> None:
    asyncio.run(_trouble_scenario(fresh_store))


async def _trouble_scenario(db_path: Path | str) -> None:
    world = await make_world(LiteSVMChain(), providers=1, renters=1, label="trouble")
    renter, provider = world.renters[0], world.providers[0]
    clock = ManualClock()
    async with open_store(db_path) as store:
        channel = await world.open(renter, provider, deposit=DGPU)
        await store.channels.ingest(
            world.receipt(renter, channel, 70_000_000), b"", provider=provider.address, now=1
        )
        # Landed, but not confirmed in time: read back from chain, closed as reconciled.
        landed = Settler(store, backend(world, TimeoutAfterSubmit), Metrics(), clock=clock)
        first = await landed.run_once()
        assert (first.reconciled, first.failed, first.channels_settled) == (1, 0, 0)
        assert await store.channels.batch_counts() == {"reconciled": 1}
        assert await world.balance(provider) == net_of(70_000_000)
        assert (await landed.run_once()).batches == 0

        # Never sent, and the chain unreadable at once: the batch stays open until the
        # next round reconciles it (failed) and settles the channel again.
        second = await world.open(renter, provider, deposit=DGPU)
        await store.channels.ingest(
            world.receipt(renter, second, 30_000_000), b"", provider=provider.address, now=2
        )
        flaky = Settler(store, backend(world, UnreachableOnce), Metrics(), clock=clock)
        stuck = await flaky.run_once()
        assert stuck.channels_settled == 0
        assert (await store.channels.batch_counts()).get("pending") == 1
        retried = await flaky.run_once()
        assert retried.channels_settled == 1
        counts = await store.channels.batch_counts()
        assert counts == {"reconciled": 1, "failed": 1, "confirmed": 1}
    assert await world.balance(provider) == net_of(70_000_000) + net_of(30_000_000)


def test_a_channel_claimed_by_the_wrong_provider_is_freed_for_the_right_one(
    fresh_store: Path | str,
) -> None:
    asyncio.run(_squatter_scenario(fresh_store))


async def _squatter_scenario(db_path: Path | str) -> None:
    world = await make_world(LiteSVMChain(), providers=2, renters=1, label="squat")
    renter, provider, squatter = world.renters[0], world.providers[0], world.providers[1]
    channel = await world.open(renter, provider, deposit=DGPU)
    receipt = world.receipt(renter, channel, 40_000_000)
    async with open_store(db_path) as store:
        # Without an intake check, whoever posts first is recorded as the provider...
        assert await store.channels.ingest(receipt, b"", provider=squatter.address, now=1) == (
            "created"
        )
        settler = Settler(store, backend(world), Metrics(), clock=ManualClock())
        first = await settler.run_once()
        assert first.skipped == {"rejected": 1} and first.batches == 0
        # ...until the chain says otherwise; then the channel's real provider gets it.
        assert await store.channels.ingest(receipt, b"", provider=provider.address, now=2) == (
            "created"
        )
        second = await settler.run_once()
        assert second.channels_settled == 1
    assert await world.balance(provider) == net_of(40_000_000)
    assert await world.balance(squatter) == 0
