"""Provider and renter over real parts: libp2p on loopback, busybox jobs in Docker, the
escrow ``.so`` in LiteSVM, outputs over the bulk channel (``@pytest.mark.docker``).
Intervals are 1 s, grace 2 s."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import docker
import pytest
from dgpu.node.config import ProviderFaults, RenterFaults
from dgpu.node.renter import JobRefused, LogReceived, ReceiptSigned, RenterEvent
from dgpu.protocol.identity import address_of

from tests.node.realkit import FEE_BPS, PRICE, RENTER_TOKENS, real_market

pytestmark = pytest.mark.docker


def leftovers(client: docker.DockerClient, owner: str) -> list[str]:
    selector = {"label": f"dgpu.owner={owner}"}
    containers = client.containers.list(all=True, filters=selector)
    volumes = client.volumes.list(filters=selector)
    return [c.name for c in containers] + [v.name for v in volumes]


async def test_busybox_job_runs_to_completion_and_everyone_is_paid(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    from tests.node.rolekit import job_spec

    events: list[RenterEvent] = []
    async with real_market(tmp_path) as m:
        # Discovery through the DHT (no coordinator): the provider's offer is found.
        found = await m.renter.find_offers(m.renter.query_for(job_spec("true")))
        assert [o.provider for o in found.offers] == [m.provider_id.public_key]
        assert found.offers[0].simulated
        spec = job_spec(
            "echo hello from busybox; sleep 3; echo bye >&2;"
            " seq 1 5000 > /out/numbers.txt; mkdir -p /out/sub; echo x > /out/sub/x.txt",
            image=busybox_image,
            output_dir="/out",
            max_output_bytes=1024 * 1024,
        )
        got = tmp_path / "got"
        result = await m.renter.run_job(
            spec, offers=found.offers, events=events.append, output_dir=got
        )
        outcome = await m.provider.wait_job(result.job_id)
        assert result.state == "succeeded" and result.exit_code == 0, result.detail
        # Outputs: fetched over the bulk channel, each file's sha256 checked against the
        # manifest.
        numbers = "".join(f"{n}\n" for n in range(1, 5001)).encode()
        by_path = {o.path: o for o in result.outputs}
        assert set(by_path) == {"numbers.txt", "sub/x.txt"}
        assert (got / "numbers.txt").read_bytes() == numbers
        assert by_path["numbers.txt"].sha256 == hashlib.sha256(numbers).hexdigest()
        assert (got / "sub" / "x.txt").read_bytes() == b"x\n"
        assert m.fetcher.stats.files == 2 and m.fetcher.stats.via_fallback == 0
        logs = b"".join(e.data for e in events if isinstance(e, LogReceived))
        assert b"hello from busybox\n" in logs and b"bye\n" in logs
        # Receipts add up to price x billed seconds; the provider holds the same.
        assert result.seconds_billed >= 3
        assert result.amount_paid == PRICE * result.seconds_billed
        assert outcome.paid == result.amount_paid == result.acknowledged
        signed = [e.cumulative for e in events if isinstance(e, ReceiptSigned)]
        assert signed == sorted(signed)
        # The provider settled on chain when the job ended: paid minus the platform fee.
        fee = result.amount_paid * FEE_BPS // 10_000
        assert await m.world.tokens(m.provider_id) == result.amount_paid - fee
        state = await m.renter.escrow.read_channel(result.channel)
        assert state is not None and state.settled == result.amount_paid
        assert m.provider.store.unsettled_receipts() == []
        assert leftovers(docker_client, m.provider_id.address) == []
        # After expiry and the dispute window, the renter reclaims the rest.
        (early,) = await m.renter.reclaim()
        assert early.status == "not_yet"
        m.world.chain.warp(early.reclaimable_at - await m.world.chain.unix_time() + 1)
        (late,) = await m.renter.reclaim()
        assert late.status == "reclaimed"
        assert late.amount == result.deposit - result.amount_paid
        assert await m.world.tokens(m.renter_id) == RENTER_TOKENS - result.amount_paid
        assert await m.world.tokens(m.world.treasury) == fee


async def test_renter_that_stops_signing_gets_its_container_stopped(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    from tests.node.rolekit import job_spec

    async with real_market(tmp_path, renter_faults=RenterFaults(stop_signing_after=2)) as m:
        assert m.provider.offer is not None
        spec = job_spec("echo start; sleep 120", image=busybox_image)
        result = await m.renter.run_job(spec, offers=[m.provider.offer])
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.stop_reason == "non_payment" and result.state == "stopped"
        # Stopped once the work went unpaid longer than interval + grace (1 s + 2 s),
        # checked each interval: the job's life is bounded by what was signed plus that.
        job = m.provider.store.get_job(result.job_id, "provider")
        assert job is not None and job.started_at is not None and job.ended_at is not None
        assert job.ended_at - job.started_at <= outcome.seconds_billed + 1 + 2 + 2
        # Paid for what was signed, no more: two receipts, each for the usage reported so
        # far — one second per report normally, more when a busy provider's report was late
        # (cumulative), so the amount is the last receipt's seconds at the price.
        assert outcome.paid == result.amount_paid == PRICE * result.seconds_billed
        assert result.seconds_billed >= 2
        fee = outcome.paid * FEE_BPS // 10_000
        assert await m.world.tokens(m.provider_id) == outcome.paid - fee
        assert leftovers(docker_client, m.provider_id.address) == []


async def test_over_reporting_provider_gets_no_receipt_beyond_the_agreement(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    from tests.node.rolekit import job_spec

    async with real_market(tmp_path, provider_faults=ProviderFaults(over_report_s=20)) as m:
        assert m.provider.offer is not None
        spec = job_spec("sleep 60", image=busybox_image)
        result = await m.renter.run_job(spec, offers=[m.provider.offer])
        assert result.disputes and "at most" in result.disputes[0]
        assert result.amount_paid == 0
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.paid == 0 and outcome.state == "stopped"
        assert await m.world.tokens(m.provider_id) == 0
        assert leftovers(docker_client, m.provider_id.address) == []


async def test_hostile_inputs_are_refused_with_clear_errors(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    from dgpu.node.net import NEGOTIATE_PROTOCOL, PeerRef
    from dgpu.protocol.messages import ErrorMessage, OutputManifest

    from tests.node.rolekit import job_spec

    async with real_market(tmp_path) as m:
        offer = m.provider.offer
        assert offer is not None
        with pytest.raises(JobRefused, match="image_not_allowed"):
            await m.renter.run_job(job_spec("true", image="evil/miner:1"), offers=[offer])
        with pytest.raises(JobRefused, match="duration_too_long"):
            await m.renter.run_job(
                job_spec("true", image=busybox_image, max_duration_s=10**6), offers=[offer]
            )
        wrong = OutputManifest(job_id=bytes(16), files=[])
        reply = await m.renter.network.request(PeerRef.from_offer(offer), NEGOTIATE_PROTOCOL, wrong)
        assert isinstance(reply, ErrorMessage) and reply.code == "bad_request"
        assert "malformed job request" in reply.message
        assert m.provider.store.jobs("provider") == []
        assert leftovers(docker_client, m.provider_id.address) == []
        assert address_of(offer.provider) == m.provider_id.address


async def test_outputs_travel_over_the_bulk_channel_to_the_renter_only(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    from dgpu.node.net import TicketRefused
    from dgpu.node.net.bulk import BulkTicket, fetch, make_ticket, parse_bulk_addr
    from dgpu.protocol.codec import decode
    from dgpu.protocol.identity import Identity
    from dgpu.protocol.messages import Quote

    from tests.node.rolekit import job_spec

    async with real_market(tmp_path) as m:
        assert m.provider.offer is not None
        spec = job_spec(
            "head -c 2000000 /dev/urandom > /out/blob.bin; echo hi > /out/hi.txt",
            image=busybox_image,
            output_dir="/out",
            max_output_bytes=4 * 1024 * 1024,
        )
        got = tmp_path / "got"
        result = await m.renter.run_job(spec, offers=[m.provider.offer], output_dir=got)
        assert result.state == "succeeded", result.detail
        # The agreed quote named the provider's bulk server, a TCP address on loopback.
        record = m.renter.store.get_job(result.job_id, "renter")
        assert record is not None and record.quote is not None
        quote = decode(record.quote)
        assert isinstance(quote, Quote)
        assert quote.bulk_addr == m.outputs.address
        assert parse_bulk_addr(quote.bulk_addr)[0] == "127.0.0.1"
        # Both files came through it (the provider does not serve outputs over libp2p).
        by_path = {o.path: o for o in result.outputs}
        blob = by_path["blob.bin"]
        data = (got / "blob.bin").read_bytes()
        assert len(data) == blob.size == 2_000_000
        assert hashlib.sha256(data).hexdigest() == blob.sha256
        assert (got / "hi.txt").read_bytes() == b"hi\n"
        assert m.fetcher.stats.files == 2 and m.fetcher.stats.via_fallback == 0
        assert m.fetcher.stats.bytes == 2_000_003
        granted = {bytes.fromhex(o.sha256) for o in result.outputs}
        assert m.outputs.published(result.job_id) == granted

        def ticket(signer: Identity, sha256: bytes, size: int) -> BulkTicket:
            return make_ticket(
                signer,
                job_id=result.job_id,
                server=m.provider_id.public_key,
                op="get",
                sha256=sha256,
                size=size,
                expires_at=int(time.time()) + 600,
            )

        # Someone else's ticket for this job's file is refused ...
        stolen = ticket(Identity.generate(), bytes.fromhex(blob.sha256), blob.size)
        with pytest.raises(TicketRefused, match="another key"):
            await fetch(quote.bulk_addr, stolen, tmp_path / "stolen")
        # ... and so is the renter's own ticket for an object this job did not output.
        other = m.outputs.store.path(bytes(32))
        other.write_bytes(b"not an output of the job")
        asked = ticket(m.renter_id, bytes(32), other.stat().st_size)
        with pytest.raises(TicketRefused, match="not an output of this job"):
            await fetch(quote.bulk_addr, asked, tmp_path / "other")
        assert not (tmp_path / "stolen").exists() and not (tmp_path / "other").exists()
        assert leftovers(docker_client, m.provider_id.address) == []
