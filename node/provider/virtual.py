"""A virtual executor: jobs that run in trio time, for simulations and fast role tests.

Nothing is executed. The job's ``sh -c SCRIPT`` command (or its argv joined by spaces)
is read as ``;``-separated steps of a tiny language, interpreted in trio time (so a
day-long job takes no real time under ``MockClock``)::

    echo TEXT              a line on stdout (``echo TEXT >&2``: on stderr)
    echo TEXT > PATH       write TEXT and a newline to the output file PATH (below
                           the spec's output directory; ``>>`` appends)
    sleep SECONDS          wait (whole or decimal seconds)
    exit CODE              end with that exit code

Any other step is an error (exit code 127, as a shell says). Every run is recorded in
:attr:`VirtualExecutor.history`; :meth:`VirtualExecutor.cleanup_orphans` removes nothing
(no job survives its process) but records the call.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import trio
from dgpu.node.executors.errors import JobStateError, OutputError, OutputTooLarge
from dgpu.node.executors.spec import JobExit, JobSpec, LogChunk, OutputFile


@dataclass
class VirtualRun:
    spec: JobSpec
    exit: JobExit | None = None
    removed: bool = False


@dataclass
class VirtualExecutor:
    history: list[VirtualRun] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "virtual"

    @property
    def live(self) -> list[VirtualRun]:
        return [run for run in self.history if not run.removed]

    def open_job(self, spec: JobSpec) -> AbstractAsyncContextManager[VirtualJob]:
        return self._open(spec)

    @asynccontextmanager
    async def _open(self, spec: JobSpec) -> AsyncIterator[VirtualJob]:
        run = VirtualRun(spec)
        self.history.append(run)
        job = VirtualJob(spec, run)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(job._interpret)
                try:
                    yield job
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            run.removed = True

    async def cleanup_orphans(self, owner: str, keep: Collection[str] = frozenset()) -> list[str]:
        await trio.lowlevel.checkpoint()
        self.sweeps.append(owner)
        return []


def _steps(command: tuple[str, ...]) -> list[str]:
    script = command[2] if len(command) >= 3 and command[1] == "-c" else " ".join(command)
    return [step.strip() for step in script.split(";") if step.strip()]


class VirtualJob:
    def __init__(self, spec: JobSpec, run: VirtualRun) -> None:
        self._spec = spec
        self._run = run
        self._chunks: list[LogChunk] = []
        self._log_wakeup = trio.Event()
        self._logs_taken = False
        self._exited = trio.Event()
        self._exit: JobExit | None = None
        self._stop = trio.Event()
        self._files: dict[str, bytes] = {}

    @property
    def spec(self) -> JobSpec:
        return self._spec

    def _log(self, stream: str, text: str) -> None:
        self._chunks.append(LogChunk("stderr" if stream == "stderr" else "stdout", text.encode()))
        self._log_wakeup.set()

    def _finish(self, code: int, reason: str) -> None:
        if self._exit is None:
            self._exit = JobExit(code, reason)  # type: ignore[arg-type]
            self._run.exit = self._exit
            self._exited.set()
            self._log_wakeup.set()

    async def _interpret(self) -> None:
        timeout = self._spec.timeout_s
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            async with trio.open_nursery() as nursery:

                async def watch_stop() -> None:
                    await self._stop.wait()
                    self._finish(143, "stopped")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_stop)
                code = await self._script()
                self._finish(code, "exited")
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            self._finish(137, "timeout")

    async def _script(self) -> int:
        for step in _steps(self._spec.command):
            words = shlex.split(step)
            verb, args = words[0], words[1:]
            if verb == "sleep" and len(args) == 1:
                await trio.sleep(float(args[0]))
            elif verb == "exit" and len(args) <= 1:
                return int(args[0]) if args else 0
            elif verb == "echo":
                self._echo(args)
            else:
                self._log("stderr", f"sh: {verb}: not found\n")
                return 127
            await trio.lowlevel.checkpoint()
        return 0

    def _echo(self, args: list[str]) -> None:
        for op in (">>", ">"):
            if op in args:
                at = args.index(op)
                text, target = " ".join(args[:at]), args[at + 1]
                rel = posixpath.relpath(posixpath.normpath(target), self._spec.output_dir)
                if rel.startswith(".."):
                    self._log("stderr", f"sh: {target}: read-only file system\n")
                    return
                old = self._files.get(rel, b"") if op == ">>" else b""
                self._files[rel] = old + text.encode() + b"\n"
                return
        if args[-1:] == [">&2"]:
            self._log("stderr", " ".join(args[:-1]) + "\n")
        else:
            self._log("stdout", " ".join(args) + "\n")

    def logs(self) -> AsyncIterator[LogChunk]:
        if self._logs_taken:
            raise JobStateError("the logs of a job can be read only once")
        self._logs_taken = True
        return self._iterate_logs()

    async def _iterate_logs(self) -> AsyncIterator[LogChunk]:
        sent = 0
        while True:
            while sent < len(self._chunks):
                sent += 1
                yield self._chunks[sent - 1]
            if self._exit is not None:
                return
            self._log_wakeup = trio.Event()
            await self._log_wakeup.wait()

    async def wait(self) -> JobExit:
        await self._exited.wait()
        assert self._exit is not None
        return self._exit

    async def stop(self, grace_s: float | None = None) -> None:
        self._stop.set()
        await self._exited.wait()

    async def kill(self) -> None:
        await self.stop()

    def extend_deadline(self) -> bool:
        return True  # a virtual job lives in the provider's process: it dies with it

    async def collect_outputs(self) -> list[OutputFile]:
        if self._exit is None:
            raise JobStateError("outputs are collected after the job ended")
        await trio.lowlevel.checkpoint()
        total = sum(len(data) for data in self._files.values())
        if total > self._spec.max_output_bytes:
            raise OutputTooLarge(total, self._spec.max_output_bytes)
        return [
            OutputFile(path, hashlib.sha256(data).hexdigest(), len(data))
            for path, data in sorted(self._files.items())
        ]

    async def read_output(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if path not in self._files:
            raise OutputError(f"no output {path!r}")
        data = self._files[path]
        return data[offset:] if size is None else data[offset : offset + size]
