"""The provider role: advertise GPUs, negotiate, verify funding on chain, run and meter jobs.

Everything it touches is injected — the network, the escrow, the executor, the GPU
backend, the store, the clock (``now()``: Unix seconds; trio's clock paces the loops) and,
optionally, the coordinator and an output host — so the same code runs on libp2p with
Docker and on the in-memory network under trio's ``MockClock``::

    provider = Provider(identity=..., config=..., network=net, escrow=escrow,
                        executor=executor, gpu_backend=backend, store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)        # recovered, serving, first offer out
        outcome = await provider.wait_job(job_id)

``run`` first recovers from a previous life (jobs it no longer owns are closed, their
containers removed, unsettled receipts settled), then serves ``/dgpu/negotiate/1.0.0``
and ``/dgpu/metering/1.0.0`` and keeps its offer advertised. Every job runs in the
provider's own nursery; cancelling ``run`` stops them all (containers removed).

Receipts go to the coordinator when there is one (re-handed every ``SETTLE_RETRY_S``);
those it has not settled on chain ``self_settle_after_s`` after their job ended, or that
the renter could soon reclaim, the provider settles itself. Without a coordinator it
settles each job's latest receipt when the job ends, and retries every ``SETTLE_RETRY_S``
what the chain did not take (a receipt left unsettled past the renter's reclaim time
would be lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from dgpu.contracts_client.money import Escrow
from dgpu.node.config import ProviderConfig
from dgpu.node.gpu.types import GpuBackend
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import METERING_PROTOCOL, NEGOTIATE_PROTOCOL, MessageStream, Network
from dgpu.node.provider.bulk_inputs import InputDesk, InputsMissing, remove_tree
from dgpu.node.provider.bulk_outputs import BulkOutputHost
from dgpu.node.provider.capacity import GpuPool, model_price, offer_terms
from dgpu.node.provider.funding import PendingJob, Refusal, check_request, verify_channel
from dgpu.node.provider.health import StoreHealth
from dgpu.node.provider.holds import HoldBook, check_funds
from dgpu.node.provider.outputs import StreamOutputHost
from dgpu.node.provider.ports import OfferDesk, OutputHost, ProviderExecutor
from dgpu.node.provider.session import ProviderSession, SessionOutcome, remove_outputs
from dgpu.node.provider.settlement import (
    SettleResult,
    hand_to_desk,
    overdue,
    reconcile,
    settle_on_chain,
)
from dgpu.node.provider.tunnel import serve_tunnels
from dgpu.node.store import LIVE_JOB_STATES, JobRecord, NodeStore, StoreError
from dgpu.protocol.codec import decode_as, encode
from dgpu.protocol.errors import DecodeError, DgpuError, SignatureError
from dgpu.protocol.identity import Identity, public_key_of_peer_id
from dgpu.protocol.messages import (
    Agreement,
    ChannelOpened,
    ErrorMessage,
    JobRequest,
    Offer,
    Quote,
    Receipt,
)
from dgpu.protocol.negotiation import ProviderNegotiation, ProviderPolicy, Refused
from dgpu.protocol.offers import make_offer
from dgpu.protocol.signing import verify

if TYPE_CHECKING:  # trio_typing's stubs shadow trio's own annotations for mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)
INPUT_RATE_FLOOR = 2_000_000
"""Bytes per second an agreed job's inputs are given to arrive before its hold expires."""

READ_TIMEOUT_S = 30.0
SWEEP_INTERVAL_S = 5.0
SETTLE_RETRY_S = 60


@dataclass(frozen=True)
class ProviderStatus:
    address: str
    peer_id: str
    gpus: int
    free: dict[str, int]
    running: list[str]
    waiting_for_channel: list[str]
    unsettled: int
    offer: Offer | None


class Provider:
    """The provider role of a node (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        config: ProviderConfig,
        network: Network,
        escrow: Escrow,
        executor: ProviderExecutor,
        gpu_backend: GpuBackend,
        store: NodeStore,
        clock: Callable[[], int] | None = None,
        desk: OfferDesk | None = None,
        outputs: OutputHost | None = None,
        outputs_dir: Path | None = None,
        inputs_dir: Path | None = None,
    ) -> None:
        """``inputs_dir`` holds the input trees of running jobs (default: ``inputs`` next
        to ``outputs_dir``); inputs are taken only over a :class:`BulkOutputHost`."""
        if config.program_id != escrow.program_id:
            raise DgpuError("the config's program id is not the escrow's")
        self.identity = identity
        self.config = config
        self.network = network
        self.escrow = escrow
        self.executor = executor
        self.gpu_backend = gpu_backend
        self.store = store
        self.health = StoreHealth(store)  # no new jobs while the store takes no writes
        self.clock = clock or network.now
        self.desk = desk
        if outputs is None and outputs_dir is not None:
            outputs = StreamOutputHost(network, identity)
        self.outputs = outputs
        self.outputs_dir = outputs_dir
        if inputs_dir is None and outputs_dir is not None:
            inputs_dir = outputs_dir.parent / "inputs"
        self.inputs: InputDesk | None = None
        if isinstance(outputs, BulkOutputHost) and inputs_dir is not None:
            self.inputs = InputDesk(outputs, inputs_dir)
        self.pool = GpuPool(gpu_backend.list_gpus())
        if not self.pool.gpus:
            raise DgpuError("this provider has no GPU to offer")
        self.offer: Offer | None = None
        self._pending: dict[bytes, PendingJob] = {}
        self._sessions: dict[bytes, ProviderSession] = {}
        self._done: dict[bytes, trio.Event] = {}
        self._outcomes: dict[bytes, SessionOutcome] = {}
        self._capacity_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._protected: dict[bytes, str] = {}
        """Jobs agreed or running, and the peer their renter speaks from: its streams are
        served from the room the network keeps for funded work."""
        self.holds = HoldBook(
            max_unfunded_per_renter=config.max_unfunded_per_renter,
            max_unfunded_per_ip=config.max_unfunded_per_ip,
            cooldown_s=config.unfunded_cooldown_s,
        )

    # -- public -----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[Provider] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, serve and advertise until cancelled (see the module docstring)."""
        await self.recover()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.network.serve(NEGOTIATE_PROTOCOL, self._on_negotiate)
                self.network.serve(METERING_PROTOCOL, self._on_metering)
                if isinstance(self.outputs, StreamOutputHost):
                    self.outputs.serve()
                serve_raw = getattr(self.network, "serve_raw", None)
                if self.config.allow_ports and serve_raw is not None:
                    serve_tunnels(self.network, self._sessions.get)  # type: ignore[arg-type]
                await nursery.start(self._advertise_loop)
                nursery.start_soon(self._sweep_loop)
                if self.desk is not None or self.config.settle_on_finish:
                    # retries what the coordinator (or, without one, the chain) did not take
                    nursery.start_soon(self._settle_retry_loop)
                task_status.started(self)
        finally:
            self._nursery = None

    async def recover(self) -> list[SettleResult]:
        """Close the jobs of a previous life, remove their containers, settle receipts."""
        now = self.clock()
        for job in self.store.jobs("provider", states=LIVE_JOB_STATES):
            state = "abandoned" if job.started_at is None else "stopped"
            self.store.update_job(
                job.job_id,
                "provider",
                now=now,
                state=state,
                ended_at=now,
                stop_reason="provider_restart",
                detail="the provider restarted while the job was live",
                seconds_billed=_seconds_paid(self.store, job),  # what the receipts cover
            )
            log.warning("job %s was %s when the provider stopped", job.job_id.hex(), job.state)
        removed = await self.executor.cleanup_orphans(self.identity.address, keep=frozenset())
        if removed:
            log.warning("removed containers of jobs no longer owned: %s", ", ".join(removed))
        return await self.settle_pending()

    async def settle_pending(self) -> list[SettleResult]:
        """Hand every unsettled receipt to the coordinator, or settle it on chain: without
        a coordinator, or when the coordinator left it unpaid ``self_settle_after_s``."""
        if not self.store.unsettled_receipts():
            return []
        if self.desk is None:
            return await self._settle_self(None)
        try:
            remaining = await reconcile(self.store, self.escrow, now=self.clock)
            late = await overdue(
                self.store,
                self.escrow,
                remaining,
                now=self.clock(),
                after_s=self.config.self_settle_after_s,
                margin_s=2 * SETTLE_RETRY_S,
            )
        except DgpuError as exc:
            log.warning("could not read the chain: %s", exc)
            remaining, late = self.store.unsettled_receipts(), []
        results: list[SettleResult] = []
        if late:
            log.warning("settling %d receipts the coordinator left unpaid", len(late))
            results = await self._settle_self(late)
        rest = [r for r in remaining if r not in late]
        return results + await hand_to_desk(self.store, self.desk, now=self.clock, receipts=rest)

    async def _settle_self(self, receipts: list[Receipt] | None) -> list[SettleResult]:
        """Settle ``receipts`` (all unsettled: None) on chain, paying the fees."""
        try:
            return await settle_on_chain(
                self.store, self.escrow, self.identity, now=self.clock, receipts=receipts
            )
        except DgpuError as exc:
            log.warning("settlement failed, will retry later: %s", exc)
            return []

    async def wait_job(self, job_id: bytes) -> SessionOutcome:
        """Wait until a job this provider runs has ended, and return how."""
        event = self._done.setdefault(job_id, trio.Event())
        await event.wait()
        return self._outcomes[job_id]

    def status(self) -> ProviderStatus:
        free = {model: len(self.pool.free(model)) for model in self.pool.models()}
        return ProviderStatus(
            address=self.identity.address,
            peer_id=self.identity.peer_id,
            gpus=len(self.pool.gpus),
            free=free,
            running=[j.hex() for j in self._sessions],
            waiting_for_channel=[j.hex() for j in self._pending],
            unsettled=len(self.store.unsettled_receipts()),
            offer=self.offer,
        )

    def policy(self, model: str) -> ProviderPolicy:
        """What this provider accepts now for GPUs of ``model`` (the most numerous model
        when it has none of ``model``)."""
        models = self.pool.models()
        if model not in models:
            model = models[0]
        free = self.pool.free(model)
        gpu = free[0] if free else next(g for g in self.pool.gpus if g.model == model)
        return ProviderPolicy(
            price_per_gpu_second=model_price(self.config, gpu),
            gpu_model=model,
            free_gpus=len(free),
            mint=self.config.mint,
            program_id=self.escrow.program_id,
            max_duration_s=self.config.max_duration_s,
            interval_s=self.config.interval_s,
            grace_s=self.config.grace_s,
            allowed_images=self.config.allowed_images,
            allow_network=self.config.allow_network,
            max_output_bytes=self.config.max_output_bytes if self.outputs is not None else 0,
            bulk_addr=self.outputs.address if self.outputs is not None else "",
            max_input_bytes=self._max_input_bytes,
            allow_ports=self._ports,
        )

    @property
    def _max_input_bytes(self) -> int:
        return self.config.max_input_bytes if self.inputs is not None else 0

    @property
    def _ports(self) -> bool:
        return self.config.allow_ports and hasattr(self.network, "serve_raw")

    # -- advertising ------------------------------------------------------------------

    def _current_offer(self, now: int) -> Offer | None:
        if not self.health.ok:
            return None  # no offer while we could not store its receipts
        best = None
        for model in self.pool.models():
            terms = offer_terms(self.config, self.pool, model)
            if terms is not None and (best is None or terms.gpu_count > best.gpu_count):
                best = terms
        if best is None:
            return None
        return make_offer(
            self.identity,
            replace(best, max_input_bytes=self._max_input_bytes, ports=self._ports),
            multiaddrs=self.network.listen_addrs[:8],
            now=now,
            ttl_s=self.config.offer_ttl_s,
        )

    async def _advertise_loop(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        while True:
            self._capacity_changed = trio.Event()
            offer = self._current_offer(self.clock())
            if offer is not None:
                await self._publish(offer)
            if not started:
                task_status.started()
                started = True
            with trio.move_on_after(max(1.0, self.config.offer_ttl_s / 2)):
                await self._capacity_changed.wait()

    async def _publish(self, offer: Offer) -> None:
        try:
            await self.network.advertise(offer)
        except NetError as exc:
            log.warning("advertising failed: %s", exc)
            return
        self.offer = offer
        if self.desk is not None:
            try:
                await self.desk.post_offer(offer)
            except DgpuError as exc:
                log.warning("the coordinator did not take our offer: %s", exc)

    def _capacity_change(self) -> None:
        self._capacity_changed.set()

    # -- housekeeping -----------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(SWEEP_INTERVAL_S)
            if not self.health.ok and self.health.probe():
                self._capacity_change()  # advertise again
            self._expire_holds()

    def _expire_holds(self) -> None:
        """Release GPUs of agreed jobs whose channel never came: the job is abandoned in
        the store, the key cools down and the offer goes out again. The one way holds
        expire (a new request expiring them without this left the job "agreed" and the
        offer unpublished until the next sweep of the advertiser)."""
        now = trio.current_time()
        for job_id in self.pool.expire(now):
            pending = self._pending.pop(job_id, None)
            self._unprotect(job_id)
            if self.inputs is not None:
                self.inputs.drop(job_id)
            if pending is not None:
                self.holds.expired(pending.request.renter, job_id, now)
                self.store.update_job(
                    job_id,
                    "provider",
                    now=self.clock(),
                    state="abandoned",
                    detail="no funded channel was shown in time",
                )
                log.info("job %s abandoned: no channel in time", job_id.hex())
            self._capacity_change()

    async def _settle_retry_loop(self) -> None:
        while True:
            await trio.sleep(SETTLE_RETRY_S)
            await self.settle_pending()

    # -- negotiation ------------------------------------------------------------------

    async def _refuse(self, stream: MessageStream, refusal: Refusal) -> None:
        log.info("refused %s: %s (%s)", refusal.job_id_hex, refusal.message, refusal.code)
        try:
            await stream.send(refusal.message_for_wire())
        except NetError:
            log.debug("could not tell the renter why", exc_info=True)

    async def _on_negotiate(self, stream: MessageStream, peer: str) -> None:
        if self._nursery is None:
            await stream.send(ErrorMessage(code="internal", message="provider is stopping"))
            return
        try:
            request = await stream.receive_as(JobRequest, timeout=READ_TIMEOUT_S)
        except DecodeError as exc:
            await self._refuse(stream, Refusal("bad_request", f"malformed job request: {exc}"))
            return
        if not self.health.ok:
            await self._refuse(stream, Refusal("internal", self.health.reason(), request.job_id))
            return
        self._expire_holds()
        negotiation = ProviderNegotiation(self.identity)
        try:
            check_request(request, peer, self.config, self.store)
            quote = negotiation.on_request(
                request, self.policy(request.gpu_model), now=self.clock()
            )
            self.holds.admit(
                request.renter, request.job_id, trio.current_time(), ip=stream.remote_ip
            )
        except Refusal as refusal:
            await self._refuse(stream, refusal.for_job(request.job_id))
            return
        except Refused as exc:
            await self._refuse(stream, Refusal(exc.code, exc.message, request.job_id))
            return
        countersigned = None
        try:
            countersigned = await self._hold_and_agree(stream, negotiation, request, quote)
        finally:
            if countersigned is None:  # no agreement: the key holds nothing
                self.holds.released(request.renter, request.job_id)
        if countersigned is None:
            return
        gpus = self.pool.indices(request.job_id)
        now = self.clock()
        try:
            self._insert_agreed(request, quote, countersigned, gpus, now)
        except StoreError as exc:
            self.pool.release(request.job_id)
            self.holds.released(request.renter, request.job_id)
            self.health.failed(exc, "recording an agreed job")
            await self._refuse(stream, Refusal("internal", self.health.reason(), request.job_id))
            return
        self._pending[request.job_id] = PendingJob(negotiation, request, quote, gpus)
        if self.inputs is not None and request.inputs:
            # the tree was checked before the quote; the renter uploads it now, unbilled
            self.inputs.expect(request.job_id, request.renter, request.inputs)
        # agreed with a renter whose balance covers the deposit: its metering stream must
        # not be starved by other peers' floods
        self._protected[request.job_id] = peer
        self.network.protect(peer)
        self.pool.extend(request.job_id, trio.current_time() + self._funding_window(request))
        self._capacity_change()
        await stream.send(countersigned)

    def _funding_window(self, request: JobRequest) -> float:
        """Seconds an agreed job's GPUs wait for its channel: the funding timeout, plus
        the time its inputs take to arrive at :data:`INPUT_RATE_FLOOR` (they are sent
        before funding; a relayed connection moves ~12 MB/s)."""
        return self.config.funding_timeout_s + request.max_input_bytes / INPUT_RATE_FLOOR

    def _insert_agreed(
        self,
        request: JobRequest,
        quote: Quote,
        countersigned: Agreement,
        gpus: tuple[int, ...],
        now: int,
    ) -> None:
        self.store.insert_job(
            JobRecord(
                job_id=request.job_id,
                role="provider",
                state="agreed",
                counterparty=request.renter,
                created_at=now,
                updated_at=now,
                request=encode(request),
                quote=encode(quote),
                agreement=encode(countersigned),
                gpus=",".join(str(i) for i in gpus),
            )
        )

    async def _hold_and_agree(
        self,
        stream: MessageStream,
        negotiation: ProviderNegotiation,
        request: JobRequest,
        quote: Quote,
    ) -> Agreement | None:
        """Hold the GPUs for the quote's short life, send it, and return the countersigned
        Agreement; None (GPUs released, the renter told why) when there is none. The
        renter's balance is read from the chain while the provider waits for its
        Agreement (proof of funds, :mod:`dgpu.node.provider.holds`)."""
        job_id = request.job_id
        hold_until = trio.current_time() + self.config.agreement_timeout_s
        if not self.pool.reserve(job_id, quote.gpu_model, quote.gpu_count, hold_until):
            await self._refuse(stream, Refusal("no_capacity", "GPUs taken", job_id))
            return None
        funds: list[Refusal | None] = []
        try:
            async with trio.open_nursery() as nursery:
                if self.config.proof_of_funds:
                    nursery.start_soon(self._read_funds, quote, funds)
                await stream.send(quote)
                agreement = await stream.receive_as(
                    Agreement, timeout=self.config.agreement_timeout_s
                )
            if funds and funds[0] is not None:
                raise funds[0]
            countersigned = negotiation.on_agreement(agreement, now=self.clock())
            if not self.pool.holds(job_id):  # expired at the very deadline
                raise Refusal("no_capacity", "the quote's hold ran out")
            return countersigned
        except Refusal as refusal:
            self.pool.release(job_id)
            await self._refuse(stream, refusal.for_job(job_id))
        except Refused as exc:
            self.pool.release(job_id)
            await self._refuse(stream, Refusal(exc.code, exc.message, job_id))
        except BaseException:
            self.pool.release(job_id)
            raise
        return None

    async def _read_funds(self, quote: Quote, result: list[Refusal | None]) -> None:
        try:
            with trio.fail_after(self.config.agreement_timeout_s):
                await check_funds(self.escrow, quote.renter, quote.mint, quote.deposit)
        except trio.TooSlowError:
            result.append(Refusal("not_funded", "the chain did not tell the renter's balance"))
        except Refusal as refusal:
            result.append(refusal)
        else:
            result.append(None)

    # -- funding and the job ----------------------------------------------------------

    async def _on_metering(self, stream: MessageStream, peer: str) -> None:
        nursery = self._nursery
        if nursery is None:
            await stream.send(ErrorMessage(code="internal", message="provider is stopping"))
            return
        try:
            opened = await stream.receive_as(ChannelOpened, timeout=READ_TIMEOUT_S)
        except DecodeError as exc:
            await self._refuse(stream, Refusal("bad_request", f"malformed message: {exc}"))
            return
        running = self._sessions.get(opened.job_id)
        if running is not None and opened.job_id not in self._pending:
            await self._reattach(running, opened, stream, peer)
            return
        pending = self._pending.get(opened.job_id)
        if pending is None or pending.request.renter != _peer_key(peer):
            await self._refuse(
                stream, Refusal("unknown_job", "no agreed job waits for this", opened.job_id)
            )
            return
        del self._pending[opened.job_id]
        try:
            channel = await verify_channel(
                pending, opened, self.escrow, self.identity, self.config, self.store, self.clock()
            )
        except Refusal as refusal:
            if refusal.__cause__ is None:
                # a channel read and found wanting counts as an unfunded hold: the key
                # cools down (not when the chain could not be read: maybe our fault)
                self.holds.expired(pending.request.renter, opened.job_id, trio.current_time())
            else:
                self.holds.released(pending.request.renter, opened.job_id)
            self._abandon(pending, refusal.message)
            await self._refuse(stream, refusal.for_job(opened.job_id))
            return
        except BaseException:
            self.holds.released(pending.request.renter, opened.job_id)
            self._abandon(pending, "channel check failed")
            raise
        self.holds.funded(pending.request.renter, opened.job_id)
        self.store.update_job(
            opened.job_id,
            "provider",
            now=self.clock(),
            state="funded",
            channel=opened.channel,
            open_nonce=opened.open_nonce,
            deposit=channel.deposit,
            channel_expires_at=opened.expires_at,
        )
        input_dir = None
        if pending.request.inputs:
            try:
                if self.inputs is None:
                    raise InputsMissing("this provider takes no inputs")
                input_dir = await self.inputs.materialise(opened.job_id, pending.request.inputs)
            except (InputsMissing, OSError) as exc:
                self._abandon(pending, f"inputs: {exc}"[:256])
                await self._refuse(stream, Refusal("bad_request", str(exc), opened.job_id))
                return
        indices = self.pool.occupy(opened.job_id)
        session = ProviderSession(
            identity=self.identity,
            config=self.config,
            store=self.store,
            executor=self.executor,
            gpu_backend=self.gpu_backend,
            clock=self.clock,
            request=pending.request,
            quote=pending.quote,
            channel=channel,
            gpus=self.pool.info(indices),
            stream=stream,
            outputs=self.outputs,
            outputs_dir=self.outputs_dir,
            health=self.health,
            input_dir=input_dir,
        )
        finished = trio.Event()
        nursery.start_soon(self._run_session, session, finished)
        await finished.wait()
        if input_dir is not None:
            await trio.to_thread.run_sync(remove_tree, input_dir)

    async def _reattach(
        self, session: ProviderSession, opened: ChannelOpened, stream: MessageStream, peer: str
    ) -> None:
        """The renter of a running job is back (its node restarted): only that very key
        (the connection's authenticated peer, and the signature), for that very channel."""
        renter = session.request.renter
        same = (opened.channel, opened.open_nonce) == (
            session.channel.channel,
            session.channel.open_nonce,
        )
        try:
            verify(opened, renter)
        except SignatureError:
            same = False
        if _peer_key(peer) != renter or not same:
            await self._refuse(
                stream, Refusal("unknown_job", "no agreed job waits for this", opened.job_id)
            )
            return
        if await session.attach(stream):
            await session.finished.wait()

    def _unprotect(self, job_id: bytes) -> None:
        peer = self._protected.pop(job_id, None)
        if peer is not None:
            self.network.unprotect(peer)

    def _abandon(self, pending: PendingJob, detail: str) -> None:
        if self.inputs is not None:
            self.inputs.drop(pending.quote.job_id)
        self._unprotect(pending.quote.job_id)
        self.pool.release(pending.quote.job_id)
        self._capacity_change()
        self.store.update_job(
            pending.quote.job_id, "provider", now=self.clock(), state="abandoned", detail=detail
        )

    async def _run_session(self, session: ProviderSession, finished: trio.Event) -> None:
        job_id = session.job_id
        self._sessions[job_id] = session
        try:
            outcome = await session.run()
        finally:
            del self._sessions[job_id]
            self._unprotect(job_id)
            self.pool.release(job_id)
            self._capacity_change()
            finished.set()
        log.info(
            "job %s %s: %d s billed, %d paid",
            job_id.hex(),
            outcome.state,
            outcome.seconds_billed,
            outcome.paid,
        )
        self._outcomes[job_id] = outcome
        if outcome.outputs and self._nursery is not None:
            self._nursery.start_soon(self._retire_outputs, job_id)
        if outcome.latest is not None:
            await self._hand_over(outcome)
        self._done.setdefault(job_id, trio.Event()).set()

    async def _retire_outputs(self, job_id: bytes) -> None:
        """Forget a job's outputs once the renter had time to fetch them."""
        await trio.sleep(self.config.output_retention_s)
        if self.outputs is not None:
            self.outputs.withdraw(job_id)
        if self.outputs_dir is not None:
            remove_outputs(self.outputs_dir, job_id)

    async def _hand_over(self, outcome: SessionOutcome) -> None:
        assert outcome.latest is not None
        if self.desk is not None:
            await hand_to_desk(self.store, self.desk, now=self.clock, receipts=[outcome.latest])
        elif self.config.settle_on_finish:
            try:
                await settle_on_chain(
                    self.store,
                    self.escrow,
                    self.identity,
                    now=self.clock,
                    receipts=[outcome.latest],
                )
            except DgpuError as exc:
                log.warning("settling job %s failed: %s", outcome.latest.job_id.hex(), exc)


def _seconds_paid(store: NodeStore, job: JobRecord) -> int:
    latest = store.latest_receipt("provider", job.job_id)
    if latest is None or job.quote is None:
        return job.seconds_billed
    try:
        quote = decode_as(Quote, job.quote)
    except DecodeError:
        return job.seconds_billed
    per_second = quote.price_per_gpu_second * quote.gpu_count
    return latest.cumulative // per_second if per_second else 0


def _peer_key(peer: str) -> bytes:
    try:
        return public_key_of_peer_id(peer)
    except DgpuError:
        return b""
