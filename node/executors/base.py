"""The interface every executor implements, and the nursery helper they share.

    async with executor.open_job(spec) as job:     # started; removed on exit, whatever happens
        async for stream, data in job.logs(): ...  # (read logs in a task of your own)
        result = await job.wait()                  # JobExit(exit_code, reason)
        for f in await job.collect_outputs(): ...  # OutputFile(path, sha256, size)
            await job.read_output(f.path)

Leaving the block, by success, failure, cancellation or an exception, stops the job and
removes everything it had (container, volume, process group, working directory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio
from dgpu.node.executors.spec import JobExit, JobSpec, LogChunk, OutputFile

T = TypeVar("T")


class Job(Protocol):
    """One running (or finished) job."""

    @property
    def spec(self) -> JobSpec: ...

    def logs(self) -> AsyncIterator[LogChunk]:
        """The job's stdout and stderr as they come; may be taken once. Ends after exit."""
        ...

    async def wait(self) -> JobExit:
        """Wait until the job has ended (by itself, its timeout, or a stop)."""
        ...

    async def stop(self, grace_s: float | None = None) -> None:
        """Ask the job to end (SIGTERM), kill it after ``grace_s``; returns once it ended."""
        ...

    async def kill(self) -> None:
        """End the job now (SIGKILL)."""
        ...

    def extend_deadline(self) -> bool:
        """Let the job run ``spec.watchdog_s`` more seconds from now, even if this process
        dies (call it once the work so far is paid, durably). False when the deadline
        could not be written (the job then stops at the old one)."""
        ...

    async def collect_outputs(self) -> list[OutputFile]:
        """List (and for containers, copy out) the output files; only after the job ended."""
        ...

    async def read_output(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """Bytes of one collected output file."""
        ...


class Executor(Protocol):
    """Something that runs jobs: Docker containers, or local processes."""

    @property
    def name(self) -> str: ...

    def open_job(self, spec: JobSpec) -> AbstractAsyncContextManager[Job]:
        """Start a job; leaving the context stops it and removes all it had."""
        ...


@asynccontextmanager
async def open_task_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a job's own tasks that lets the body's exception through unwrapped.

    The job's tasks (log pumps, the exit watcher) never raise, so an exception group
    leaving the nursery holds the body's exception alone: re-raise it as itself.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Lifecycle(Protocol):
    """How an executor's job starts and cleans up (what :func:`open_started_job` drives)."""

    async def _start(self, nursery: trio.Nursery) -> None: ...

    async def _cleanup(self) -> None: ...


L = TypeVar("L", bound=Lifecycle)


@asynccontextmanager
async def open_started_job(make: Callable[[], L]) -> AsyncIterator[L]:
    """Make a job on entering (not before: it may take resources), start it with a nursery
    for its own tasks, yield it, and on the way out, however the body ends (cancelled
    included), stop those tasks and clean up, shielded: the job's container or process
    group must not outlive its context."""
    job = make()
    try:
        async with open_task_nursery() as nursery:
            await job._start(nursery)
            try:
                yield job
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await job._cleanup()


# The trio-stubs bundled with trio-typing (a libp2p dependency) predate trio's own
# annotations and do not know ``abandon_on_cancel``: call through an untyped alias.
_run_sync: Any = trio.to_thread.run_sync


async def run_sync_abandoning(
    fn: Callable[[], T], *, limiter: trio.CapacityLimiter | None = None
) -> T:
    """Run a blocking call in a worker thread that is abandoned if we are cancelled (the
    call must end by itself later, e.g. when the container it waits for is removed)."""
    result: T = await _run_sync(fn, abandon_on_cancel=True, limiter=limiter)
    return result
