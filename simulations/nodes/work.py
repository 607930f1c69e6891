"""What providers really delivered: each job's run time, measured at the executor.

:class:`TimedExecutor` wraps the node's :class:`~dgpu.node.provider.VirtualExecutor` (jobs
that "run" for N virtual seconds: a test double, labelled ``virtual``) and records, per
job, when it started and when it ended in trio time. The accounting compares that with
what the chain paid: the provider's unpaid exposure and the renter's overpayment. It also
marks the simulated GPUs busy while a job runs, so their readings look loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import trio
from dgpu.node.executors.base import Job
from dgpu.node.executors.spec import JobExit, JobSpec, LogChunk, OutputFile
from dgpu.node.gpu import SimulatedBackend
from dgpu.node.provider import VirtualExecutor, VirtualJob


@dataclass
class WorkRecord:
    job_id: str
    model: str
    gpus: int
    started: float
    ended: float | None = None

    def seconds(self) -> int:
        """Seconds the job ran, as the nodes' whole-second clocks count them (the
        simulation's clocks start at trio time 0)."""
        assert self.ended is not None
        return int(self.ended) - int(self.started)


@dataclass
class WorkLog:
    """Every job run by every provider of one simulation."""

    records: dict[str, WorkRecord] = field(default_factory=dict)

    def busy_gpus(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for record in self.records.values():
            if record.ended is None:
                busy[record.model] = busy.get(record.model, 0) + record.gpus
        return busy


class _TimedJob:
    """A :class:`VirtualJob` whose end is recorded when it is first seen."""

    def __init__(self, job: VirtualJob, record: WorkRecord) -> None:
        self._job = job
        self._record = record

    @property
    def spec(self) -> JobSpec:
        return self._job.spec

    def logs(self) -> AsyncIterator[LogChunk]:
        return self._job.logs()

    async def stop(self, grace_s: float | None = None) -> None:
        await self._job.stop(grace_s)

    async def kill(self) -> None:
        await self._job.kill()

    def extend_deadline(self) -> bool:
        return self._job.extend_deadline()

    async def collect_outputs(self) -> list[OutputFile]:
        return await self._job.collect_outputs()

    async def read_output(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        return await self._job.read_output(path, offset, size)

    async def wait(self) -> JobExit:
        exit_ = await self._job.wait()
        if self._record.ended is None:
            self._record.ended = trio.current_time()
        return exit_


class TimedExecutor:
    """The virtual executor of one provider, recording run times into a :class:`WorkLog`."""

    def __init__(self, log: WorkLog, backend: SimulatedBackend) -> None:
        self._inner = VirtualExecutor()
        self._log = log
        self._backend = backend
        self._index = {gpu.uuid: gpu.index for gpu in backend.list_gpus()}
        self._model = backend.list_gpus()[0].model

    @property
    def name(self) -> str:
        return "virtual (simulated jobs)"

    def open_job(self, spec: JobSpec) -> AbstractAsyncContextManager[Job]:
        return self._open(spec)

    @asynccontextmanager
    async def _open(self, spec: JobSpec) -> AsyncIterator[Job]:
        record = WorkRecord(spec.job_id, self._model, len(spec.gpu_ids), trio.current_time())
        self._log.records[spec.job_id] = record
        indices = [self._index[uuid] for uuid in spec.gpu_ids if uuid in self._index]
        for index in indices:
            self._backend.set_busy(index, True)
        try:
            async with self._inner.open_job(spec) as job:
                yield _TimedJob(job, record)
        finally:
            if record.ended is None:
                record.ended = trio.current_time()
            for index in indices:
                self._backend.set_busy(index, False)

    async def cleanup_orphans(self, owner: str, keep: Collection[str] = frozenset()) -> list[str]:
        return await self._inner.cleanup_orphans(owner, keep)
