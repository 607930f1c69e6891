"""Jobs in Docker containers, through the ``docker`` SDK.

Each job gets one container with no network (unless its spec allows it), a read-only
root, a small writable ``/tmp`` (tmpfs), a labelled volume at its output directory, its
CPU/memory/PID limits, and GPUs by device request when — and only when — they are real.
Labels ``dgpu.job``/``dgpu.owner``/``dgpu.run`` let a restarted provider find what it
left behind (:meth:`DockerExecutor.cleanup_orphans`). Logs come from the engine's
json-file log (size-capped), which never blocks the container when nobody reads. A job
with ``watchdog_s`` stops by itself when the provider stops extending its deadline (see
:mod:`dgpu.node.executors.docker_options`): a dead provider leaves a stopped container,
not a running one, and its next life removes it.

The SDK is blocking: every call runs in a worker thread; waits that last as long as the
job (exit, log follow) are abandoned on cancellation and end when the container is gone.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests
import trio
from dgpu.node.executors.base import open_started_job, run_sync_abandoning
from dgpu.node.executors.docker_options import (
    DEADLINE_FILE,
    JOB_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    WATCHDOG_BUSYBOX,
    DockerConfig,
    container_options,
    volume_name,
)
from dgpu.node.executors.errors import (
    ExecutorError,
    ExecutorUnavailable,
    JobLost,
    JobStartError,
    JobStateError,
    OutputError,
)
from dgpu.node.executors.logs import LogBuffer
from dgpu.node.executors.outputs import extract_output_tar, read_output_file, scan_output_dir
from dgpu.node.executors.relay import PortStream, open_container_port
from dgpu.node.executors.spec import ExitReason, JobExit, JobSpec, LogChunk, OutputFile, Stream

log = logging.getLogger(__name__)

T = TypeVar("T")
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class DockerExecutor:
    """Runs jobs as containers of one Docker Engine. See :func:`open_docker_executor`."""

    def __init__(self, client: docker.DockerClient, config: DockerConfig) -> None:
        self.client = client
        self.config = config
        # Waits that last as long as a job hold a thread each: keep them off trio's
        # default limiter, which short calls share.
        self._long_waits = trio.CapacityLimiter(512)

    @property
    def name(self) -> str:
        return "docker"

    async def ping(self) -> None:
        """Raise :class:`ExecutorUnavailable` unless the engine answers."""
        try:
            await trio.to_thread.run_sync(self.client.ping)
        except _ENGINE_ERRORS as exc:
            raise _unavailable(self.config.base_url, exc) from exc

    def open_job(self, spec: JobSpec) -> AbstractAsyncContextManager[DockerJob]:
        return open_started_job(lambda: DockerJob(self, spec))

    @property
    def watchdog_dir(self) -> Path:
        if self.config.watchdog_dir is not None:
            return self.config.watchdog_dir
        return Path(self.config.workdir or tempfile.gettempdir()) / "watchdog"

    async def cleanup_orphans(self, owner: str, keep: Collection[str] = frozenset()) -> list[str]:
        """Remove the containers and volumes labelled with ``owner`` whose job is not in
        ``keep``; returns the job ids removed (a restarted provider calls this)."""
        return await trio.to_thread.run_sync(self._sweep, owner, frozenset(keep))

    def _sweep(self, owner: str, keep: frozenset[str]) -> list[str]:
        selector = {"label": f"{OWNER_LABEL}={owner}"}
        removed: set[str] = set()
        try:
            for container in self.client.containers.list(
                all=True, filters=selector, ignore_removed=True
            ):
                job = container.labels.get(JOB_LABEL, "")
                if job in keep:
                    continue
                _remove_quietly(container.remove, force=True)
                removed.add(job)
                log.info("removed orphan container %s of job %s", container.short_id, job)
            for volume in self.client.volumes.list(filters=selector):
                job = (volume.attrs.get("Labels") or {}).get(JOB_LABEL, "")
                if job in keep:
                    continue
                _remove_quietly(volume.remove, force=True)
                removed.add(job)
        except _ENGINE_ERRORS as exc:
            raise ExecutorError(f"orphan cleanup failed: {exc}") from exc
        # deadline folders are named <job>-<run>; this folder is this owner's alone
        if self.watchdog_dir.is_dir():
            for folder in self.watchdog_dir.iterdir():
                if folder.name.rpartition("-")[0] not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
        return sorted(removed)

    def close(self) -> None:
        self.client.close()


@asynccontextmanager
async def open_docker_executor(config: DockerConfig) -> AsyncIterator[DockerExecutor]:
    """Connect to the engine (raising :class:`ExecutorUnavailable` if it does not answer)."""
    try:
        client = await trio.to_thread.run_sync(
            functools.partial(
                docker.DockerClient,
                base_url=config.base_url,
                timeout=int(config.api_timeout_s),
                max_pool_size=config.max_connections,
            )
        )
    except _ENGINE_ERRORS as exc:
        raise _unavailable(config.base_url, exc) from exc
    executor = DockerExecutor(client, config)
    try:
        await executor.ping()
        yield executor
    finally:
        executor.close()


class DockerJob:
    """One container. Obtained from :meth:`DockerExecutor.open_job`."""

    def __init__(self, executor: DockerExecutor, spec: JobSpec) -> None:
        self._executor = executor
        self._client = executor.client
        self._config = executor.config
        self._spec = spec
        self.run_id = secrets.token_hex(8)
        self.container_id: str | None = None
        self._container: Any = None
        self._logs = LogBuffer(writers=2, max_buffered=self._config.log_buffer_bytes)
        self._exited = trio.Event()
        self._exit: JobExit | None = None
        self._exit_error: ExecutorError | None = None
        self._stop_requested = False
        self._timed_out = False
        self._workdir: Path | None = None
        self._watchdog: Path | None = None  # the folder of the deadline file
        self._outputs: dict[str, OutputFile] | None = None
        self.started_at: float | None = None
        self.start_seconds: float | None = None  # create + start, as measured here

    @property
    def spec(self) -> JobSpec:
        return self._spec

    # -- life ---------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        spec = self._spec
        if spec.watchdog_s is not None:
            self._watchdog = self._executor.watchdog_dir / f"{spec.job_id}-{self.run_id}"
            try:
                self._watchdog.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JobStartError(f"cannot make the watchdog's folder: {exc}") from exc
            if not self.extend_deadline():
                raise JobStartError("cannot write the watchdog's deadline")
        options = container_options(
            spec, self._config, self.run_id, self._watchdog, _device_groups(spec)
        )
        t0 = trio.current_time()
        try:
            if spec.max_output_bytes > 0:
                await self._call(
                    functools.partial(
                        self._client.volumes.create,
                        name=volume_name(spec, self.run_id),
                        labels={
                            k: options["labels"][k] for k in (JOB_LABEL, OWNER_LABEL, RUN_LABEL)
                        },
                    )
                )
            self._container = await self._call(
                functools.partial(self._client.containers.create, **options)
            )
            self.container_id = self._container.id
            await self._call(self._container.start)
        except docker.errors.ImageNotFound as exc:
            raise JobStartError(
                f"image {spec.image!r} is not present on this provider: {_explain(exc)}"
            ) from exc
        except docker.errors.APIError as exc:
            raise JobStartError(f"container did not start: {_explain(exc)}") from exc
        self.started_at = trio.current_time()
        self.start_seconds = self.started_at - t0
        log.info(
            "job %s: container %s started in %.3fs",
            spec.job_id,
            self._container.short_id,
            self.start_seconds,
        )
        nursery.start_soon(self._pump, "stdout")
        nursery.start_soon(self._pump, "stderr")
        nursery.start_soon(self._watch)

    async def _watch(self) -> None:
        """Wait for the exit; enforce the timeout. Never raises (but may be cancelled)."""
        assert self.started_at is not None
        timeout = self._spec.timeout_s
        deadline = self.started_at + timeout if timeout is not None else float("inf")
        try:
            with trio.move_on_at(deadline) as scope:
                code = await self._wait_container()
            if scope.cancelled_caught:
                self._timed_out = True
                log.info("job %s: timeout of %ss reached, stopping", self._spec.job_id, timeout)
                await self._stop_container(self._config.stop_grace_s)
                code = await self._wait_container()
            self._finish(code)
        except ExecutorError as exc:
            log.warning("job %s: lost track of the container: %s", self._spec.job_id, exc)
            self._exit_error = exc
            self._exited.set()

    def _finish(self, code: int) -> None:
        reason: ExitReason = (
            "timeout" if self._timed_out else "stopped" if self._stop_requested else "exited"
        )
        self._exit = JobExit(code, reason)
        log.info("job %s: ended (%s, exit code %d)", self._spec.job_id, reason, code)
        self._exited.set()

    async def _wait_container(self) -> int:
        try:
            result = await run_sync_abandoning(
                self._container.wait, limiter=self._executor._long_waits
            )
        except _ENGINE_ERRORS as exc:
            raise JobLost(f"waiting for container {self.container_id}: {exc}") from exc
        return int(result["StatusCode"])

    async def _stop_container(self, grace_s: float) -> None:
        try:
            await self._call(functools.partial(self._container.stop, timeout=round(grace_s)))
        except docker.errors.NotFound as exc:
            raise JobLost(f"container {self.container_id} is gone") from exc

    async def _pump(self, stream: Stream) -> None:
        """Copy one output stream from the engine's log into the log buffer.

        Following the log (Docker 20.10) can end before the last partial line is written
        to it, so once the container has exited the whole log is read again and what the
        follow missed is delivered (unless the log was rotated, which loses the start).
        """
        follow: Any = None
        which = {"stdout": stream == "stdout", "stderr": stream == "stderr"}
        received = 0
        try:
            follow = await self._call(
                functools.partial(
                    self._client.api.logs, self.container_id, stream=True, follow=True, **which
                )
            )
            while True:
                data = await run_sync_abandoning(
                    lambda: next(follow, None), limiter=self._executor._long_waits
                )
                if data is None:
                    break
                received += len(data)
                self._logs.put(stream, data)
            await self._exited.wait()
            if received < self._config.log_max_bytes:
                whole: bytes = await self._call(
                    functools.partial(self._client.api.logs, self.container_id, **which)
                )
                if len(whole) > received:
                    self._logs.put(stream, whole[received:])
        except (ExecutorError, *_ENGINE_ERRORS) as exc:
            log.warning("job %s: %s log stream ended early: %s", self._spec.job_id, stream, exc)
        finally:
            if follow is not None:
                follow.close()  # unblocks an abandoned reader thread
            self._logs.close_writer()

    async def _cleanup(self) -> None:
        """Remove the container (killing it) and the volume, and the copied outputs."""
        with trio.move_on_after(self._config.cleanup_timeout_s) as scope:
            try:
                await run_sync_abandoning(self._remove_all)
            except _ENGINE_ERRORS as exc:
                log.error("job %s: cleanup failed: %s", self._spec.job_id, exc)
        if scope.cancelled_caught:
            log.error("job %s: cleanup timed out; cleanup_orphans will retry", self._spec.job_id)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self._watchdog is not None:
            shutil.rmtree(self._watchdog, ignore_errors=True)
        if not self._exited.is_set():  # left before it ended: a later wait() must not hang
            self._exit_error = JobStateError("the job was removed before it ended")
            self._exited.set()

    def _remove_all(self) -> None:
        # By label, so a container created by a start that was cancelled is found too.
        selector = {"label": f"{RUN_LABEL}={self.run_id}"}
        for container in self._client.containers.list(
            all=True, filters=selector, ignore_removed=True
        ):
            _remove_quietly(container.remove, force=True)
        if self._spec.max_output_bytes > 0:
            try:
                volume = self._client.volumes.get(volume_name(self._spec, self.run_id))
            except docker.errors.NotFound:
                return
            _remove_quietly(volume.remove, force=True)

    # -- the Job interface ----------------------------------------------------------------

    def logs(self) -> AsyncIterator[LogChunk]:
        return self._logs.stream()

    async def wait(self) -> JobExit:
        await self._exited.wait()
        if self._exit_error is not None:
            raise self._exit_error
        assert self._exit is not None
        return self._exit

    async def stop(self, grace_s: float | None = None) -> None:
        if not self._exited.is_set():
            self._stop_requested = True
            grace = self._config.stop_grace_s if grace_s is None else grace_s
            await self._stop_container(grace)
        await self._exited.wait()

    async def kill(self) -> None:
        if not self._exited.is_set():
            self._stop_requested = True
            try:
                await self._call(self._container.kill)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: it is not running any more
                    raise ExecutorError(f"cannot kill the container: {_explain(exc)}") from exc
        await self._exited.wait()

    def extend_deadline(self) -> bool:
        """Write ``now + watchdog_s`` as the deadline the container checks (atomically:
        the check never reads half a number). A few bytes, so done inline."""
        if self._watchdog is None or self._spec.watchdog_s is None:
            return True
        deadline = int(time.time() + self._spec.watchdog_s)  # the container's clock too
        path = self._watchdog / DEADLINE_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(f"{deadline}\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.error("job %s: cannot extend the watchdog's deadline: %s", self._spec.job_id, exc)
            return False
        return True

    async def collect_outputs(self) -> list[OutputFile]:
        if not self._exited.is_set():
            raise JobStateError("outputs can be collected only after the job has ended")
        if self._outputs is None:
            manifest = await trio.to_thread.run_sync(self._copy_outputs)
            self._outputs = {f.path: f for f in manifest}
        return list(self._outputs.values())

    def _copy_outputs(self) -> list[OutputFile]:
        spec = self._spec
        if spec.max_output_bytes == 0:
            return []
        try:
            self._workdir = Path(
                tempfile.mkdtemp(prefix=f"dgpu-{spec.job_id}-", dir=self._config.workdir)
            )
            dest = self._workdir / "outputs"
            dest.mkdir()
        except OSError as exc:  # e.g. the provider's disk is full
            raise OutputError(f"cannot make a folder for the outputs: {exc}") from exc
        try:
            chunks, _stat = self._container.get_archive(spec.output_dir)
            extract_output_tar(chunks, dest, spec.max_output_bytes)
        except docker.errors.NotFound:
            return []
        except _ENGINE_ERRORS as exc:
            raise OutputError(f"cannot copy the outputs out of the container: {exc}") from exc
        return scan_output_dir(dest, spec.max_output_bytes)

    async def read_output(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        if self._outputs is None or self._workdir is None:
            raise JobStateError("collect the outputs before reading them")
        if path not in self._outputs:
            raise OutputError(f"no output file {path!r}")
        root = self._workdir / "outputs"
        return await trio.to_thread.run_sync(read_output_file, root, path, offset, size)

    async def open_port(self, port: int) -> PortStream:
        """A connection to ``127.0.0.1:port`` inside the container, through a relay
        exec'd in it (:mod:`dgpu.node.executors.relay`: the container keeps no network)."""
        if self.container_id is None or self._exited.is_set():
            raise JobStateError("the container is not running")
        busybox = None
        if self._config.watchdog_busybox is not None and self._spec.watchdog_s is not None:
            busybox = WATCHDOG_BUSYBOX
        return await open_container_port(
            self._config.base_url, self.container_id, port, busybox=busybox
        )

    async def _call(self, fn: Callable[[], T]) -> T:
        """A short engine call in a worker thread; a broken connection is converted."""
        try:
            return await trio.to_thread.run_sync(fn)
        except docker.errors.DockerException:
            raise  # APIError is also a RequestException: an answer, not a broken link
        except requests.exceptions.RequestException as exc:
            raise _unavailable(self._config.base_url, exc) from exc


def _remove_quietly(remove: Callable[..., None], **kwargs: Any) -> None:
    try:
        remove(**kwargs)
    except docker.errors.NotFound:
        pass  # already gone: that is what we wanted
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def _unavailable(base_url: str, exc: BaseException) -> ExecutorUnavailable:
    return ExecutorUnavailable(
        f"no Docker Engine answers at {base_url} ({exc}); start one "
        "(scripts/start-dockerd.sh does it on a test machine)"
    )


def _device_groups(spec: JobSpec) -> tuple[int, ...]:
    """The host groups owning the job's device nodes (``render``, ``video``)."""
    if spec.gpus_simulated:
        return ()
    groups: list[int] = []
    for device in spec.gpu_devices:
        try:
            groups.append(os.stat(device).st_gid)
        except OSError as exc:
            raise JobStartError(f"GPU device {device} is not there: {exc}") from exc
    return tuple(groups)
