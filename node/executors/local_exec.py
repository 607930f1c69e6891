"""Jobs as local processes, for providers who explicitly enable it (trusted workloads).

A job runs in a fresh working directory with a minimal environment (nothing of the
provider's own environment leaks in), its output directory given as ``$DGPU_OUTPUT_DIR``,
in a process group of its own that is killed whole on stop, cancel or exit. Without
network in its spec it runs under ``unshare --net`` (loopback only); a memory limit is
applied with ``prlimit --as``. CPU limits are not enforced by this executor. The image
of the spec is ignored.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import trio
from dgpu.node.executors.base import open_started_job
from dgpu.node.executors.errors import (
    ExecutorUnavailable,
    JobStartError,
    JobStateError,
    OutputError,
)
from dgpu.node.executors.logs import DEFAULT_LOG_BUFFER_BYTES, LogBuffer
from dgpu.node.executors.outputs import read_output_file, scan_output_dir
from dgpu.node.executors.relay import PortStream, open_local_port
from dgpu.node.executors.spec import (
    MAX_LOG_CHUNK,
    ExitReason,
    JobExit,
    JobSpec,
    LogChunk,
    OutputFile,
    Stream,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Which GPUs a process may use, per vendor (CUDA takes NVML's UUIDs).
_VISIBLE: Final = {"nvidia": "CUDA_VISIBLE_DEVICES"}


@dataclass(frozen=True)
class LocalProcessConfig:
    """``enabled`` must be set on purpose: local processes are not sandboxed like
    containers are."""

    enabled: bool = False
    workdir: Path | None = None  # parent of the jobs' working directories
    path: str = DEFAULT_PATH
    isolate_network: bool = True  # `unshare --net --map-root-user` unless spec.network
    stop_grace_s: float = 5.0
    log_buffer_bytes: int = DEFAULT_LOG_BUFFER_BYTES


class LocalProcessExecutor:
    """Runs jobs as process groups on this machine."""

    def __init__(self, config: LocalProcessConfig) -> None:
        if not config.enabled:
            raise ExecutorUnavailable(
                "the local-process executor is disabled; a provider must enable it explicitly"
            )
        self.config = config

    @property
    def name(self) -> str:
        return "local"

    def open_job(self, spec: JobSpec) -> AbstractAsyncContextManager[LocalJob]:
        return open_started_job(lambda: LocalJob(self.config, spec))


class LocalJob:
    """One process group. Obtained from :meth:`LocalProcessExecutor.open_job`."""

    def __init__(self, config: LocalProcessConfig, spec: JobSpec) -> None:
        self._config = config
        self._spec = spec
        self.workdir = Path(tempfile.mkdtemp(prefix=f"dgpu-{spec.job_id}-", dir=config.workdir))
        self.output_dir = self.workdir / "out"
        self.output_dir.mkdir()
        self._process: trio.Process | None = None
        self._logs = LogBuffer(writers=2, max_buffered=config.log_buffer_bytes)
        self._exited = trio.Event()
        self._exit: JobExit | None = None
        self._stop_requested = False
        self._timed_out = False
        self._outputs: dict[str, OutputFile] | None = None
        self.started_at: float | None = None

    @property
    def spec(self) -> JobSpec:
        return self._spec

    def argv(self) -> list[str]:
        """The command line actually run: the spec's, wrapped for isolation and limits."""
        argv = list(self._spec.command)
        if self._spec.memory_limit_mb is not None:
            argv = ["prlimit", f"--as={self._spec.memory_limit_mb * 1024 * 1024}", "--", *argv]
        if not self._spec.network and self._config.isolate_network:
            argv = ["unshare", "--net", "--map-root-user", "--", *argv]
        return argv

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": self._config.path,
            "HOME": str(self.workdir),
            "TMPDIR": str(self.workdir),
            "LANG": "C.UTF-8",
            **self._spec.env,
            "DGPU_JOB_ID": self._spec.job_id,
            "DGPU_OUTPUT_DIR": str(self.output_dir),
            # the input tree, where the provider built it (read-only files, not a mount)
            **({"DGPU_INPUT_DIR": str(self._spec.input_dir)} if self._spec.input_dir else {}),
        }
        if self._spec.gpu_ids and not self._spec.gpus_simulated:
            # Apple Silicon has one GPU, which every process of the Mac shares (MLX, Metal);
            # AMD: ROCm names GPUs by the KFD's ids, not AMD SMI's UUIDs, so a local
            # process is not narrowed to its GPUs (run AMD jobs in containers for that)
            visible = _VISIBLE.get(self._spec.gpu_vendor)
            if visible is not None:
                env[visible] = ",".join(self._spec.gpu_ids)
        return env

    async def _start(self, nursery: trio.Nursery) -> None:
        try:
            self._process = await trio.lowlevel.open_process(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,  # its own process group, killed whole
            )
        except OSError as exc:
            raise JobStartError(f"cannot start {self._spec.command[0]!r}: {exc}") from exc
        self.started_at = trio.current_time()
        log.info("job %s: local process %d started", self._spec.job_id, self._process.pid)
        assert self._process.stdout is not None and self._process.stderr is not None
        nursery.start_soon(self._pump, "stdout", self._process.stdout)
        nursery.start_soon(self._pump, "stderr", self._process.stderr)
        nursery.start_soon(self._watch)

    async def _pump(self, stream: Stream, pipe: trio.abc.ReceiveStream) -> None:
        try:
            while data := await pipe.receive_some(MAX_LOG_CHUNK):
                self._logs.put(stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("job %s: %s pipe closed: %s", self._spec.job_id, stream, exc)
        finally:
            self._logs.close_writer()

    async def _watch(self) -> None:
        assert self._process is not None and self.started_at is not None
        timeout = self._spec.timeout_s
        deadline = self.started_at + timeout if timeout is not None else float("inf")
        with trio.move_on_at(deadline):
            await self._process.wait()
        if self._process.returncode is None:
            self._timed_out = True
            log.info("job %s: timeout of %ss reached, stopping", self._spec.job_id, timeout)
            await self._terminate(self._config.stop_grace_s)
        self._finish()

    def _finish(self) -> None:
        assert self._process is not None
        code = self._process.returncode
        assert code is not None
        reason: ExitReason = (
            "timeout" if self._timed_out else "stopped" if self._stop_requested else "exited"
        )
        self._exit = JobExit(128 - code if code < 0 else code, reason)  # -N: killed by signal N
        log.info(
            "job %s: ended (%s, exit code %d)", self._spec.job_id, reason, self._exit.exit_code
        )
        self._exited.set()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, sig)
        except ProcessLookupError:
            pass  # the whole group is gone already
        except PermissionError as exc:  # the group id was reused by someone else's
            log.warning("job %s: cannot signal group: %s", self._spec.job_id, exc)

    async def _terminate(self, grace_s: float) -> None:
        assert self._process is not None
        self._signal_group(signal.SIGTERM)
        with trio.move_on_after(grace_s):
            await self._process.wait()
        self._signal_group(signal.SIGKILL)
        await self._process.wait()

    async def _cleanup(self) -> None:
        if self._process is not None:
            self._signal_group(signal.SIGKILL)  # also what the leader left behind
            await self._process.wait()
            for pipe in (self._process.stdout, self._process.stderr):
                if pipe is not None:
                    await pipe.aclose()
            if not self._exited.is_set():  # left before it ended: a later wait() must not hang
                self._stop_requested = True
                self._finish()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the Job interface ----------------------------------------------------------------

    def logs(self) -> AsyncIterator[LogChunk]:
        return self._logs.stream()

    async def wait(self) -> JobExit:
        await self._exited.wait()
        assert self._exit is not None
        return self._exit

    async def stop(self, grace_s: float | None = None) -> None:
        if not self._exited.is_set():
            self._stop_requested = True
            await self._terminate(self._config.stop_grace_s if grace_s is None else grace_s)
        await self._exited.wait()

    async def kill(self) -> None:
        if not self._exited.is_set():
            self._stop_requested = True
            self._signal_group(signal.SIGKILL)
        await self._exited.wait()

    def extend_deadline(self) -> bool:
        # No watchdog: a development executor. Its process loses its output pipes when
        # the provider dies (SIGPIPE on its next write), but one that writes nothing runs
        # on; use the Docker executor where unpaid compute must stay bounded.
        return True

    async def collect_outputs(self) -> list[OutputFile]:
        if not self._exited.is_set():
            raise JobStateError("outputs can be collected only after the job has ended")
        if self._outputs is None:
            self._signal_group(signal.SIGKILL)  # nothing may write while we read
            manifest = await self._thread(
                lambda: scan_output_dir(self.output_dir, self._spec.max_output_bytes)
            )
            self._outputs = {f.path: f for f in manifest}
        return list(self._outputs.values())

    async def open_port(self, port: int) -> PortStream:
        """A connection to the job's port (a host process: ``127.0.0.1:port``)."""
        return await open_local_port(port)

    async def read_output(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        if self._outputs is None:
            raise JobStateError("collect the outputs before reading them")
        if path not in self._outputs:
            raise OutputError(f"no output file {path!r}")
        return await self._thread(lambda: read_output_file(self.output_dir, path, offset, size))

    @staticmethod
    async def _thread(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)
