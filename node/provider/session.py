"""One funded job on the provider: run it, meter it, get paid, hand the outputs over.

The metering stream (opened by the renter) carries, once the channel is verified::

    provider → JobStatus(starting) → JobStatus(running)
    provider → LogChunk* and a signed UsageReport every interval
    renter   → Receipt (cumulative, signed) | Cancel | ErrorMessage
    provider → JobStatus(running, "receipt-stored ...") once a receipt is durable
    provider → final UsageReport, waits up to the grace period for its Receipt
    provider → OutputManifest (signed), JobStatus(final state)

Money rules, all driven through :class:`~dgpu.protocol.metering.ProviderMeter`: a receipt
that raises what we hold is stored durably *before* anything else happens, and only then
acknowledged (a ``ReceiptAck``); the job is stopped when no receipt covered the work
within interval + grace, when the escrow would be exceeded, or at the agreed maximum
duration. Whatever ends the job, the container is stopped and removed (the executor's
context guarantees it) and the GPUs are released.

The same bound holds when this process is gone: the job runs under the executor's
watchdog (``watchdog_s`` = interval + grace), whose deadline is pushed on only after a
receipt is durable.

Who was at fault is recorded from evidence, not guessed. The meter loop ticks every second;
a tick that comes more than ``STALL_S`` late means this process did not run (SIGSTOP, a
suspended VM, an event loop blocked): the renter could not pay for reports we never sent,
so the stall is excused (a report goes out at once and the renter has interval + grace
from then), and a job the watchdog stopped while we stalled is ``provider_stalled``, billed
only up to the watchdog's deadline. ``non_payment`` is recorded only when the receipts
stopped while we ran.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from dgpu.node.config import ProviderConfig
from dgpu.node.executors.base import Job
from dgpu.node.executors.errors import ExecutorError
from dgpu.node.executors.spec import JobExit
from dgpu.node.executors.spec import JobSpec as ExecSpec
from dgpu.node.gpu.errors import GpuError
from dgpu.node.gpu.types import GpuBackend, GpuInfo
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import MessageStream
from dgpu.node.provider.health import StoreHealth
from dgpu.node.provider.ports import HostedFile, OutputHost, ProviderExecutor
from dgpu.node.store import NodeStore, StoreError
from dgpu.protocol.errors import ProtocolError, SignatureError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import (
    Cancel,
    ErrorMessage,
    GpuSample,
    JobRequest,
    JobState,
    JobStatus,
    LogChunk,
    OutputFile,
    OutputManifest,
    Quote,
    Receipt,
    ReceiptAck,
)
from dgpu.protocol.metering import ChannelRef, ProviderMeter, StopReason
from dgpu.protocol.signing import sign, verify

log = logging.getLogger(__name__)

Clock = Callable[[], int]
_COPY_CHUNK = 1024 * 1024
LOG_DRAIN_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
STALL_S = 2.0
"""How late a one-second meter tick may come before we count it as our own stall (a
loaded machine delays a tick by a fraction of a second; a frozen process by seconds)."""
PROVIDER_STALLED = "provider_stalled"


@dataclass
class SessionOutcome:
    state: JobState
    exit_code: int | None
    stop_reason: str
    detail: str
    seconds_billed: int
    paid: int
    latest: Receipt | None
    outputs: list[OutputFile] = field(default_factory=list)


def exec_spec(
    request: JobRequest,
    quote: Quote,
    gpus: list[GpuInfo],
    config: ProviderConfig,
    input_dir: Path | None = None,
) -> ExecSpec:
    """The executor's job spec for an agreed request (raises ``JobSpecError``)."""
    return ExecSpec(
        job_id=request.job_id.hex(),
        image=request.image,
        command=tuple(request.command),
        env={e.name: e.value for e in request.env},
        gpu_ids=tuple(g.uuid for g in gpus),
        gpus_simulated=any(g.simulated for g in gpus),
        gpu_vendor=gpus[0].vendor if gpus else "nvidia",
        gpu_devices=tuple(d for g in gpus for d in g.devices),
        cpu_limit=config.cpu_limit,
        memory_limit_mb=config.memory_limit_mb,
        network=request.network,
        timeout_s=float(quote.max_duration_s),
        output_dir=request.output_dir or "/out",
        max_output_bytes=quote.max_output_bytes,
        watchdog_s=float(quote.interval_s + quote.grace_s),
        input_dir=input_dir,
    )


class ProviderSession:
    """Runs one funded job over its metering stream (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        config: ProviderConfig,
        store: NodeStore,
        executor: ProviderExecutor,
        gpu_backend: GpuBackend,
        clock: Clock,
        request: JobRequest,
        quote: Quote,
        channel: ChannelRef,
        gpus: list[GpuInfo],
        stream: MessageStream,
        outputs: OutputHost | None,
        outputs_dir: Path | None,
        health: StoreHealth | None = None,
        input_dir: Path | None = None,
    ) -> None:
        self.identity = identity
        self.config = config
        self.store = store
        self.executor = executor
        self.gpu_backend = gpu_backend
        self.clock = clock
        self.request = request
        self.quote = quote
        self.channel = channel
        self.gpus = gpus
        self.stream = stream
        self.outputs = outputs
        self.outputs_dir = outputs_dir
        self.health = health or StoreHealth(store)
        self.input_dir = input_dir  # the job's input tree (mounted read-only at /in)
        self.job_id = quote.job_id
        self.meter: ProviderMeter | None = None
        self._stop_reason = ""
        self._stop_detail = ""
        self._stop_requested = trio.Event()
        self._paid_changed = trio.Event()
        self._renter_gone = False  # no metering stream now (the renter may come back)
        self._stream_back = trio.Event()
        self._reading_old = trio.CancelScope()  # the receive loop's read of a stream
        self.finished = trio.Event()  # set when run() returns
        self._ended = False
        self._log_seq = 0
        self._job: Job | None = None
        self._watchdog_at = math.inf  # when the executor's watchdog stops the job
        self._store_failed: StoreError | None = None  # the last receipt was not stored
        self._last_tick = trio.current_time()  # the meter loop's last wake (trio's clock)
        self._stalled_s = 0.0  # how long we stalled since the last durable receipt
        self._excused_until = 0  # no non-payment stop before this (clock): our stall

    # -- helpers ----------------------------------------------------------------------

    def _lost(self, exc: NetError) -> None:
        """The metering stream broke. The job goes on: the renter's node may restart and
        attach a new stream (:meth:`attach`); if it does not, no receipt comes and the
        non-payment rule stops the job within interval + grace, as for any silent renter."""
        if not self._renter_gone:
            log.info("job %s: renter unreachable (waiting for it): %s", self.job_id.hex(), exc)
            self._renter_gone = True
            self._stream_back = trio.Event()

    async def attach(self, stream: MessageStream) -> bool:
        """A new metering stream from the renter (its node restarted): metering resumes
        on it. False when the job is over."""
        if self._ended or self.finished.is_set():
            return False
        old, self.stream = self.stream, stream
        self._renter_gone = False
        self._stream_back.set()
        # the old stream may be dead without knowing it yet (a connection dropped
        # silently): stop reading it, so the receive loop turns to the new one
        self._reading_old.cancel()
        with trio.move_on_after(1), contextlib.suppress(NetError):
            await old.reset()
        log.info("job %s: the renter is back", self.job_id.hex())
        return await self._send(JobStatus(job_id=self.job_id, state="running", detail="resumed"))

    @property
    def running_job(self) -> Job | None:
        """The executor's job while it runs (what port tunnels reach); None otherwise."""
        return None if self._ended or self.finished.is_set() else self._job

    def request_stop(self, reason: str, detail: str = "") -> None:
        if not self._stop_requested.is_set():
            self._stop_reason, self._stop_detail = reason, detail
            log.info("job %s: stopping (%s) %s", self.job_id.hex(), reason, detail)
            self._stop_requested.set()

    async def _send(
        self, message: JobStatus | LogChunk | OutputManifest | ErrorMessage | ReceiptAck
    ) -> bool:
        if self._renter_gone:
            return False
        try:
            await self.stream.send(message)
        except NetError as exc:
            self._lost(exc)
            return False
        return True

    def _samples(self) -> list[GpuSample]:
        samples: list[GpuSample] = []
        for gpu in self.gpus:
            try:
                s = self.gpu_backend.sample(gpu.index)
            except GpuError as exc:
                log.warning("sampling GPU %d failed: %s", gpu.index, exc)
                continue
            samples.append(
                GpuSample(
                    index=min(s.index, 63),
                    util_pct=min(max(s.util_pct, 0), 100),
                    mem_used_mb=max(s.mem_used_mb, 0),
                    power_mw=max(s.power_mw, 0),
                    temp_c=min(max(s.temp_c, -50), 200),
                )
            )
        return samples

    def _update(self, **changes: object) -> None:
        # Bookkeeping, not money: a record that cannot be written must not end the job
        # (nor, through the provider's nursery, every other job).
        try:
            self.store.update_job(self.job_id, "provider", now=self.clock(), **changes)
        except StoreError as exc:
            self.health.failed(exc, f"recording job {self.job_id.hex()}")

    # -- the job ----------------------------------------------------------------------

    async def run(self) -> SessionOutcome:
        try:
            return await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> SessionOutcome:
        spec = exec_spec(self.request, self.quote, self.gpus, self.config, self.input_dir)
        await self._send(JobStatus(job_id=self.job_id, state="starting"))
        self._update(state="starting")
        exit_: JobExit | None = None
        hosted: list[HostedFile] = []
        try:
            async with self.executor.open_job(spec) as job:
                self._job = job
                self._watchdog_at = self.clock() + (spec.watchdog_s or math.inf)
                started_at = self.clock()
                self.meter = ProviderMeter(self.identity, self.quote, self.channel, started_at)
                self._update(state="running", started_at=started_at, container=spec.job_id)
                await self._send(JobStatus(job_id=self.job_id, state="running"))
                async with trio.open_nursery() as nursery:
                    logs_done = trio.Event()
                    nursery.start_soon(self._pump_logs, job, logs_done)
                    nursery.start_soon(self._receive_loop)
                    nursery.start_soon(self._meter_loop)
                    try:
                        exit_ = await self._wait_end(job)
                    except ExecutorError as exc:  # the engine lost the job
                        log.warning("job %s: lost: %s", self.job_id.hex(), exc)
                        self.request_stop("executor_error", str(exc))
                        nursery.cancel_scope.cancel()
                        return await self._finish(None, [])
                    ended_at = self.clock()
                    self._ended = True  # no periodic report after this
                    billed_until = ended_at
                    if not self._stop_reason and ended_at >= self._watchdog_at:
                        # the container stopped itself: nothing after its deadline is billed
                        billed_until = self._billable_until(ended_at)
                        self._note_stall()  # the meter loop may not have run since
                        if self._store_failed is not None:
                            self._stop_reason = "store_failed"
                            self._stop_detail = f"receipts not stored: {self._store_failed}"
                        elif self._stalled_s > 0:
                            self._stop_reason = PROVIDER_STALLED
                            self._stop_detail = (
                                f"stopped by the watchdog while this provider stalled"
                                f" {self._stalled_s:.0f}s (frozen or suspended): not the"
                                " renter's fault"
                            )
                        else:
                            self._stop_reason = StopReason.NON_PAYMENT.value
                            self._stop_detail = "stopped by the watchdog: no receipt in time"
                    with trio.move_on_after(LOG_DRAIN_TIMEOUT_S):
                        await logs_done.wait()
                    await self._final_report(ended_at, billed_until)
                    if exit_.reason == "exited" and self.quote.max_output_bytes > 0:
                        hosted = await self._collect_outputs(job)
                    nursery.cancel_scope.cancel()
        except ExecutorError as exc:
            log.warning("job %s: executor failed: %s", self.job_id.hex(), exc)
            self.request_stop("executor_error", str(exc))
        return await self._finish(exit_, hosted)

    async def _wait_end(self, job: Job) -> JobExit:
        lost: ExecutorError | None = None
        async with trio.open_nursery() as nursery:

            async def stop_on_request() -> None:
                await self._stop_requested.wait()
                try:
                    await job.stop(STOP_GRACE_S)
                except ExecutorError as exc:
                    log.warning("job %s: stop failed (%s); killing it", self.job_id.hex(), exc)
                    await job.kill()

            nursery.start_soon(stop_on_request)
            try:
                exit_ = await job.wait()
            except ExecutorError as exc:
                lost = exc
            nursery.cancel_scope.cancel()
        if lost is not None:
            raise lost
        return exit_

    async def _pump_logs(self, job: Job, done: trio.Event) -> None:
        try:
            async for chunk in job.logs():
                self._log_seq += 1
                message = LogChunk(
                    job_id=self.job_id, seq=self._log_seq, stream=chunk.stream, data=chunk.data
                )
                await self._send(message)  # dropped while the renter is away
        finally:
            done.set()

    async def _meter_loop(self) -> None:
        assert self.meter is not None
        interval = self.quote.interval_s
        deadline = trio.current_time()
        self._last_tick = deadline
        seconds = 0
        while True:
            # every second: the non-payment stop must come when the unpaid work reaches
            # interval + grace, not up to one interval later (the README's bound)
            deadline += 1
            seconds += 1
            await trio.sleep_until(deadline)
            if self._ended:
                return
            now = self.clock()
            if self._note_stall():
                # The renter could not pay for reports we never sent: a report now, and
                # interval + grace from now to pay it (ticks missed are not caught up).
                deadline = trio.current_time()
                self._excused_until = now + interval + self.quote.grace_s
                seconds = 0
            elif seconds % interval:
                if self.meter.unpaid_too_long(now=now) and now >= self._excused_until:
                    self._stop_unpaid()
                    return
                continue
            reason = self.meter.should_stop(now=now)
            if reason is StopReason.NON_PAYMENT and now < self._excused_until:
                reason = None
            if reason is StopReason.NON_PAYMENT:
                self._stop_unpaid()
                return
            if reason is not None:
                self.request_stop(reason.value)
                return
            over = self.config.faults.over_report_s
            report = self.meter.report(
                now=now + over, until=self._billable_until(now) + over, samples=self._samples()
            )
            if self._renter_gone:
                continue  # the next report after the renter is back covers this one
            try:
                await self.stream.send(report)
            except NetError as exc:
                self._lost(exc)

    def _billable_until(self, now: int) -> int:
        """``now``, or the watchdog's deadline once it passed: a container cannot run past
        it (it stops itself), so after a stall of ours nothing later is billed."""
        return now if self._watchdog_at == math.inf else min(now, int(self._watchdog_at))

    def _note_stall(self) -> bool:
        """Whether this process stalled since the meter loop last ran (adds it to the
        evidence). Called by the meter loop at each tick, and when the job ends (after a
        stall the job's end may be seen before the meter loop runs again)."""
        now = trio.current_time()
        gap = now - self._last_tick - 1.0  # a tick is due every second
        self._last_tick = now
        if gap <= STALL_S:
            return False
        self._stalled_s += gap
        log.warning(
            "job %s: this provider stalled %.1fs (frozen, suspended or blocked); the renter"
            " is not blamed for it",
            self.job_id.hex(),
            gap,
        )
        return True

    def _stop_unpaid(self) -> None:
        if self._renter_gone:
            self.request_stop("renter_gone", "no receipt: the renter went away")
        else:
            bound = self.quote.interval_s + self.quote.grace_s
            self.request_stop(
                StopReason.NON_PAYMENT.value, f"no receipt within interval + grace ({bound}s)"
            )

    async def _receive_loop(self) -> None:
        while True:
            if self._renter_gone:
                await self._stream_back.wait()
            stream = self.stream
            try:
                with trio.CancelScope() as reading:
                    self._reading_old = reading
                    message = await stream.receive(timeout=math.inf)
            except NetError as exc:
                if stream is self.stream:
                    self._lost(exc)
                continue
            except ProtocolError as exc:
                log.info("job %s: bad message from the renter: %s", self.job_id.hex(), exc)
                continue
            if reading.cancelled_caught:  # a new stream was attached (:meth:`attach`)
                continue
            if isinstance(message, Receipt):
                await self._on_receipt(message)
            elif isinstance(message, Cancel):
                try:
                    verify(message, self.quote.renter)
                except SignatureError as exc:
                    log.info("job %s: unsigned cancel ignored: %s", self.job_id.hex(), exc)
                    continue
                if message.job_id == self.job_id:
                    self.request_stop("cancelled", message.reason)
            elif isinstance(message, ErrorMessage):
                self.request_stop("renter_error", f"{message.code}: {message.message}")
            else:
                log.info("job %s: unexpected %s ignored", self.job_id.hex(), type(message).__name__)

    async def _on_receipt(self, receipt: Receipt) -> None:
        assert self.meter is not None
        try:
            raised = self.meter.on_receipt(receipt)
        except ProtocolError as exc:
            log.info("job %s: receipt refused: %s", self.job_id.hex(), exc)
            return
        if raised:
            # Durable before anything else: the ack (and the watchdog's new deadline)
            # follow only a stored receipt. One we could not store is held in memory
            # (the meter counts it; the job's end hands it over) but never acknowledged.
            try:
                self.store.save_receipt("provider", receipt, now=self.clock())
            except StoreError as exc:
                self.health.failed(exc, f"storing a receipt of job {self.job_id.hex()}")
                self._store_failed = exc
                return
            self._store_failed = None
            self._stalled_s = 0.0  # paid up since: an earlier stall is no excuse any more
            self._extend_watchdog()
            await self._send(
                ReceiptAck(job_id=receipt.job_id, seq=receipt.seq, cumulative=receipt.cumulative)
            )
            self._paid_changed.set()
            self._paid_changed = trio.Event()

    def _extend_watchdog(self) -> None:
        if self._job is not None and self._job.extend_deadline():
            watchdog_s = self.quote.interval_s + self.quote.grace_s
            self._watchdog_at = self.clock() + watchdog_s

    async def _final_report(self, ended_at: int, billed_until: int) -> None:
        assert self.meter is not None
        if self._renter_gone:
            return
        over = self.config.faults.over_report_s
        report = self.meter.report(
            now=ended_at + over, until=billed_until + over, samples=self._samples()
        )
        try:
            await self.stream.send(report)
        except NetError as exc:
            self._lost(exc)
            return
        if self._stop_reason == StopReason.NON_PAYMENT.value:
            return
        with trio.move_on_after(self.quote.grace_s):
            while self.meter.paid < report.amount_due and not self._renter_gone:
                await self._paid_changed.wait()

    async def _collect_outputs(self, job: Job) -> list[HostedFile]:
        if self.outputs is None or self.outputs_dir is None:
            return []
        try:
            files = await job.collect_outputs()
        except ExecutorError as exc:
            log.warning("job %s: outputs not collected: %s", self.job_id.hex(), exc)
            return []
        target = self.outputs_dir / self.job_id.hex()
        hosted: list[HostedFile] = []
        for f in files:
            local = target / f.path
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                with local.open("wb") as out:
                    offset = 0
                    while offset < f.size:
                        block = await job.read_output(f.path, offset, _COPY_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        offset += len(block)
            except (OSError, ExecutorError) as exc:  # a full disk must not end the provider
                log.warning("job %s: output %s not kept: %s", self.job_id.hex(), f.path, exc)
                continue
            hosted.append(HostedFile(f.path, bytes.fromhex(f.sha256), f.size, local))
        return hosted

    async def _finish(self, exit_: JobExit | None, hosted: list[HostedFile]) -> SessionOutcome:
        meter = self.meter
        state, exit_code = self._final_state(exit_)
        manifest = sign(
            OutputManifest(
                job_id=self.job_id,
                files=[OutputFile(path=h.path, sha256=h.sha256, size=h.size) for h in hosted],
            ),
            self.identity,
        )
        if hosted and self.outputs is not None:
            self.outputs.publish(
                self.job_id, self.quote.renter, hosted, max_bytes=self.quote.max_output_bytes
            )
        await self._send(manifest)
        detail = self._stop_detail[:256]
        await self._send(
            JobStatus(job_id=self.job_id, state=state, exit_code=exit_code, detail=detail)
        )
        per_second = self.quote.price_per_gpu_second * self.quote.gpu_count
        paid = meter.paid if meter else 0
        outcome = SessionOutcome(
            state=state,
            exit_code=exit_code,
            stop_reason=self._stop_reason,
            detail=detail,
            seconds_billed=paid // per_second if per_second else 0,
            paid=paid,
            latest=meter.latest if meter else None,
            outputs=list(manifest.files),
        )
        self._update(
            state=state,
            ended_at=self.clock(),
            exit_code=exit_code,
            stop_reason=outcome.stop_reason,
            detail=detail,
            seconds_billed=outcome.seconds_billed,
        )
        return outcome

    def _final_state(self, exit_: JobExit | None) -> tuple[JobState, int | None]:
        if exit_ is None:
            return "failed", None
        code = max(-255, min(255, exit_.exit_code))
        if self._stop_reason == "cancelled":
            return "cancelled", code
        if self._stop_reason:
            return "stopped", code
        if exit_.reason == "timeout":
            self._stop_reason = StopReason.MAX_DURATION.value
            return "stopped", code
        return ("succeeded" if exit_.exit_code == 0 else "failed"), code


def remove_outputs(outputs_dir: Path, job_id: bytes) -> None:
    shutil.rmtree(outputs_dir / job_id.hex(), ignore_errors=True)
