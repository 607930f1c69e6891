"""Attack 5 of issue 12: holding a provider's GPUs with agreements that are never funded.

On the in-memory network under trio's MockClock: every time below is exact. The squatter
speaks the real negotiation protocol with validly signed messages; it just never opens
the channel.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.net import NEGOTIATE_PROTOCOL, NetError, PeerRef, open_memory_network
from dgpu.node.net.memory import MemoryNetworkConfig
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Agreement, ErrorMessage, Quote
from dgpu.protocol.negotiation import RenterNegotiation

from tests.node.rolekit import MINT, MemoryMarket, job_spec, memory_market

# agreement_timeout_s + funding_timeout_s of the provider below; 31 is no multiple of the
# provider's 5 s sweep, so a hold expires between two sweeps
AGREE_S, FUND_S = 10, 31
CHANGES: dict[str, object] = {"agreement_timeout_s": AGREE_S, "funding_timeout_s": FUND_S}


@asynccontextmanager
async def squatter(
    m: MemoryMarket, *, tokens: int = 10**12, ip: str = ""
) -> AsyncIterator[Squatter]:
    identity = Identity.generate()
    if tokens:
        m.ledger.mint_to(identity.public_key, MINT, tokens)
    async with open_memory_network(m.hub, identity, MemoryNetworkConfig(ip=ip)) as net:
        yield Squatter(m, identity, net)


class Squatter:
    def __init__(self, m: MemoryMarket, identity: Identity, net: object) -> None:
        self.m = m
        self.identity = identity
        self.net = net

    async def agree(self, gpus: int = 2) -> ErrorMessage | Agreement:
        """Negotiate ``gpus`` GPUs and stop before funding: the provider's last answer."""
        offer = self.m.provider.offer
        assert offer is not None
        negotiation = RenterNegotiation(self.identity, offer, job_spec("true", gpu_count=gpus))
        request = negotiation.make_request(now=self.m.hub.now(), job_id=os.urandom(16))
        net = self.net
        async with net.open_stream(PeerRef.from_offer(offer), NEGOTIATE_PROTOCOL) as s:  # type: ignore[attr-defined]
            await s.send(request)
            quote = await s.receive()
            if isinstance(quote, ErrorMessage):
                return quote
            assert isinstance(quote, Quote)
            agreement = negotiation.on_quote(
                quote, now=self.m.hub.now(), program_id=self.m.ledger.program_id
            )
            await s.send(agreement)
            answer = await s.receive()
            assert isinstance(answer, ErrorMessage | Agreement)
            self.job_id = request.job_id
            return answer


def free(m: MemoryMarket) -> int:
    return m.provider.status().free["RTX 4090"]


async def test_an_expired_hold_is_cleaned_up_by_the_next_request_too(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        memory_market(tmp_path, provider_changes=CHANGES) as m,
        squatter(m) as first,
        squatter(m) as second,
    ):
        assert isinstance(await first.agree(), Agreement)
        assert free(m) == 0 and m.provider.status().waiting_for_channel
        # just past the hold, before the provider's next sweep
        await trio.sleep(FUND_S + 1)
        assert isinstance(await second.agree(gpus=1), Agreement)
        job = m.provider_store.get_job(first.job_id, "provider")
        assert job is not None and job.state == "abandoned"
        assert m.provider.status().waiting_for_channel == [second.job_id.hex()]
        # the freed GPU is advertised again at once
        await trio.testing.wait_all_tasks_blocked()
        assert m.provider.offer is not None and m.provider.offer.gpu_count == 1


async def test_unfunded_holds_are_short_one_per_key_and_a_repeat_cools_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, provider_changes=CHANGES) as m, squatter(m) as sq:
        start = trio.current_time()
        assert isinstance(await sq.agree(gpus=1), Agreement)
        # a second hold for the same key is refused while the first is unfunded
        refused = await sq.agree(gpus=1)
        assert isinstance(refused, ErrorMessage) and refused.code == "over_limit"
        assert free(m) == 1
        # the hold lasts the funding timeout, then the sweep frees it
        await trio.sleep_until(start + FUND_S + 5)
        assert free(m) == 2
        # the key cools down (60 s by default), then may try again; a repeat doubles it
        cooling = await sq.agree(gpus=1)
        assert isinstance(cooling, ErrorMessage) and cooling.code == "over_limit"
        await trio.sleep(60)
        assert isinstance(await sq.agree(gpus=1), Agreement)
        await trio.sleep(FUND_S + 5 + 60)
        refused = await sq.agree(gpus=1)
        assert isinstance(refused, ErrorMessage) and "wait" in refused.message
        # an honest renter is served throughout
        result = await m.renter.run_job(job_spec("echo ok", gpu_count=2))
        assert result.state == "succeeded"


async def test_unfunded_holds_are_limited_per_address_whatever_the_keys(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Fresh funded keys are cheap to make on one machine; its address is not."""
    changes = {**CHANGES, "max_unfunded_per_ip": 1}
    async with (
        memory_market(tmp_path, provider_changes=changes) as m,
        squatter(m, ip="198.51.100.7") as first,
        squatter(m, ip="198.51.100.7") as second,
        squatter(m, ip="203.0.113.9") as elsewhere,
    ):
        start = trio.current_time()
        assert isinstance(await first.agree(gpus=1), Agreement)
        refused = await second.agree(gpus=1)
        assert isinstance(refused, ErrorMessage) and refused.code == "over_limit"
        assert "from your address are not funded yet (limit 1)" in refused.message
        assert m.provider.holds.unfunded_from("198.51.100.7") == 1
        # another address is served; the refused key was not charged a cool-down
        assert isinstance(await elsewhere.agree(gpus=1), Agreement)
        await trio.sleep_until(start + FUND_S + 5)  # both holds expired, the sweep ran
        assert m.provider.holds.unfunded_from("198.51.100.7") == 0
        assert isinstance(await second.agree(gpus=1), Agreement)


async def test_a_key_without_the_deposit_holds_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, provider_changes=CHANGES) as m:
        async with squatter(m, tokens=0) as broke:
            answer = await broke.agree()
            assert isinstance(answer, ErrorMessage) and answer.code == "not_funded"
            assert "does not cover the deposit" in answer.message
            assert free(m) == 2 and not m.provider.status().waiting_for_channel
        result = await m.renter.run_job(job_spec("echo ok", gpu_count=2))
        assert result.state == "succeeded"


async def test_a_silent_quote_holds_the_gpus_only_for_the_agreement_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, provider_changes=CHANGES) as m, squatter(m) as sq:
        offer = m.provider.offer
        assert offer is not None
        negotiation = RenterNegotiation(sq.identity, offer, job_spec("true", gpu_count=2))
        request = negotiation.make_request(now=m.hub.now(), job_id=os.urandom(16))
        async with sq.net.open_stream(PeerRef.from_offer(offer), NEGOTIATE_PROTOCOL) as s:  # type: ignore[attr-defined]
            start = trio.current_time()
            await s.send(request)
            assert isinstance(await s.receive(), Quote)
            assert free(m) == 0
            # say nothing: the provider gives up after the agreement timeout
            with pytest.raises(NetError):  # the stream is reset
                await s.receive(timeout=AGREE_S * 3)
            assert trio.current_time() - start <= AGREE_S + 1
        assert free(m) == 2
