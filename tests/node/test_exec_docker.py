"""DockerExecutor against the real Docker Engine (``@pytest.mark.docker``).

Every test checks that the container (and its output volume) is gone afterwards, found
by the labels the executor set, whichever way the job ended.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import docker
import pytest
import trio
from dgpu.node.executors import (
    JOB_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    DockerConfig,
    DockerExecutor,
    ExecutorError,
    ExecutorUnavailable,
    Job,
    JobExit,
    JobSpec,
    JobStartError,
    JobStateError,
    LogChunk,
    OutputFile,
    OutputTooLarge,
    PortStream,
    open_docker_executor,
)

from tests.fixtures_docker import DOCKER_URL

pytestmark = pytest.mark.docker
log = logging.getLogger(__name__)


@pytest.fixture
async def executor(
    docker_client: docker.DockerClient, docker_owner: str
) -> AsyncIterator[DockerExecutor]:
    config = DockerConfig(owner=docker_owner, base_url=DOCKER_URL, stop_grace_s=1.0)
    async with open_docker_executor(config) as executor:
        yield executor


def spec(image: str, script: str, **kwargs: object) -> JobSpec:
    return JobSpec(job_id="job-1", image=image, command=("sh", "-c", script), **kwargs)  # type: ignore[arg-type]


def leftovers(client: docker.DockerClient, label: str) -> list[str]:
    """Names of containers and volumes still carrying ``label``."""
    selector = {"label": label}
    containers = client.containers.list(all=True, filters=selector)
    volumes = client.volumes.list(filters=selector)
    return [c.name for c in containers] + [v.name for v in volumes]


async def read_logs(job: Job, into: dict[str, bytearray]) -> None:
    async for chunk in job.logs():
        into[chunk.stream] += chunk.data


async def test_busybox_job_logs_exit_code_and_outputs(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    script = (
        "echo hello; echo warning >&2; "
        'mkdir -p "$DGPU_OUTPUT_DIR/sub"; '
        'printf result-data > "$DGPU_OUTPUT_DIR/sub/result.txt"; '
        'dd if=/dev/zero of="$DGPU_OUTPUT_DIR/zeros" bs=1024 count=64 2>/dev/null; '
        'ln -s /etc/passwd "$DGPU_OUTPUT_DIR/link"'
    )
    logs: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    async with executor.open_job(spec(busybox_image, script)) as job:
        run_label = f"{RUN_LABEL}={job.run_id}"
        assert leftovers(docker_client, run_label)  # the container and its volume exist
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_logs, job, logs)
            result = await job.wait()
        outputs = await job.collect_outputs()
        contents = {f.path: await job.read_output(f.path) for f in outputs}
        head = await job.read_output("sub/result.txt", offset=2, size=4)
        log.info("container start (create + start): %.3f s", job.start_seconds)
    assert result == JobExit(0, "exited")
    assert result.succeeded
    assert logs == {"stdout": b"hello\n", "stderr": b"warning\n"}
    zeros = bytes(64 * 1024)
    assert outputs == [
        OutputFile("sub/result.txt", hashlib.sha256(b"result-data").hexdigest(), 11),
        OutputFile("zeros", hashlib.sha256(zeros).hexdigest(), len(zeros)),
    ]  # the symbolic link is not an output
    assert contents == {"sub/result.txt": b"result-data", "zeros": zeros}
    assert head == b"sult"
    assert leftovers(docker_client, run_label) == []


async def test_container_is_confined(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    script = (
        "cat /proc/net/dev; "
        "touch /rootfile 2>/dev/null && echo ROOT-WRITABLE; "
        "touch /tmp/scratch && echo TMP-WRITABLE; "
        "echo ready; sleep 600"
    )
    job_spec = spec(
        busybox_image,
        script,
        cpu_limit=0.5,
        memory_limit_mb=64,
        gpu_ids=("SIM-GPU-0",),
        gpus_simulated=True,
        labels={"purpose": "test"},
    )
    out = bytearray()
    async with executor.open_job(job_spec) as job:
        async for chunk in job.logs():
            out += chunk.data
            if b"ready" in out:
                break
        assert job.container_id is not None
        attrs = docker_client.containers.get(job.container_id).attrs
        await job.stop()
        result = await job.wait()
    interfaces = [line.split(":")[0].strip() for line in out.decode().splitlines() if ":" in line]
    assert interfaces == ["lo"]  # network none: loopback only
    assert b"ROOT-WRITABLE" not in out
    assert b"TMP-WRITABLE" in out
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["CapDrop"] == ["ALL"]
    assert host["PidsLimit"] == executor.config.pids_limit
    assert host["DeviceRequests"] in (None, [])  # simulated GPUs: no device request
    labels = attrs["Config"]["Labels"]
    assert labels[JOB_LABEL] == "job-1"
    assert labels[OWNER_LABEL] == executor.config.owner
    assert labels["purpose"] == "test"
    assert result.reason == "stopped"
    assert leftovers(docker_client, f"{OWNER_LABEL}={executor.config.owner}") == []


async def test_failing_command(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    async with executor.open_job(spec(busybox_image, "echo oops >&2; exit 7")) as job:
        result = await job.wait()
        chunks = [chunk async for chunk in job.logs()]
        run_label = f"{RUN_LABEL}={job.run_id}"
    assert result == JobExit(7, "exited")
    assert not result.succeeded
    assert chunks == [LogChunk("stderr", b"oops\n")]
    assert leftovers(docker_client, run_label) == []


async def test_cancel_mid_run_removes_the_container(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    with trio.CancelScope() as scope:
        async with executor.open_job(spec(busybox_image, "echo started; sleep 600")) as job:
            run_label = f"{RUN_LABEL}={job.run_id}"
            async for chunk in job.logs():
                if b"started" in chunk.data:
                    scope.cancel()
                    await job.wait()  # cancelled here
    assert scope.cancelled_caught
    assert leftovers(docker_client, run_label) == []
    with pytest.raises(JobStateError, match="removed before it ended"):
        await job.wait()


async def test_exception_in_the_body_removes_the_container(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    class Boom(Exception):
        pass

    run_ids: list[str] = []

    async def fail_inside() -> None:
        async with executor.open_job(spec(busybox_image, "sleep 600")) as job:
            run_ids.append(job.run_id)
            raise Boom

    with pytest.raises(Boom):
        await fail_inside()
    assert leftovers(docker_client, f"{RUN_LABEL}={run_ids[0]}") == []


async def test_timeout_stops_and_removes(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    async with executor.open_job(spec(busybox_image, "sleep 600", timeout_s=0.5)) as job:
        result = await job.wait()
        run_label = f"{RUN_LABEL}={job.run_id}"
    assert result.reason == "timeout"
    assert result.exit_code in (137, 143)  # SIGKILL or SIGTERM
    assert leftovers(docker_client, run_label) == []


async def test_kill(executor: DockerExecutor, busybox_image: str) -> None:
    async with executor.open_job(spec(busybox_image, "sleep 600")) as job:
        await job.kill()
        assert await job.wait() == JobExit(137, "stopped")


async def test_missing_image_is_a_start_error(
    executor: DockerExecutor, docker_client: docker.DockerClient
) -> None:
    with pytest.raises(JobStartError, match="not present on this provider"):
        async with executor.open_job(spec("dgpu/absent:never", "true")):
            pytest.fail("the job must not start")
    assert leftovers(docker_client, f"{OWNER_LABEL}={executor.config.owner}") == []


async def test_missing_executable(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    """With an init process (the default) the init reports it and exits 127; without one
    the engine refuses to start the container."""
    bad = JobSpec(job_id="job-1", image=busybox_image, command=("/bin/no-such-program",))
    async with executor.open_job(bad) as job:
        result = await job.wait()
        stderr = b"".join([c.data async for c in job.logs() if c.stream == "stderr"])
    assert result == JobExit(127, "exited")
    assert b"/bin/no-such-program" in stderr
    bare = DockerExecutor(docker_client, replace(executor.config, init=False))
    with pytest.raises(JobStartError, match="did not start"):
        async with bare.open_job(bad):
            pytest.fail("the job must not start")
    assert leftovers(docker_client, f"{OWNER_LABEL}={executor.config.owner}") == []


async def test_outputs_over_the_limit(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    script = 'dd if=/dev/zero of="$DGPU_OUTPUT_DIR/big" bs=1000 count=2 2>/dev/null'
    async with executor.open_job(spec(busybox_image, script, max_output_bytes=1000)) as job:
        with pytest.raises(JobStateError):
            await job.collect_outputs()  # not yet ended
        assert (await job.wait()).succeeded
        with pytest.raises(OutputTooLarge):
            await job.collect_outputs()
        run_label = f"{RUN_LABEL}={job.run_id}"
    assert leftovers(docker_client, run_label) == []


async def test_no_outputs_when_none_are_allowed(
    executor: DockerExecutor, busybox_image: str
) -> None:
    script = 'test -z "$DGPU_OUTPUT_DIR" && ! touch /out/x 2>/dev/null'
    async with executor.open_job(spec(busybox_image, script, max_output_bytes=0)) as job:
        assert (await job.wait()).succeeded
        assert await job.collect_outputs() == []


async def test_large_logs_come_in_bounded_chunks(
    executor: DockerExecutor, busybox_image: str
) -> None:
    script = "dd if=/dev/zero bs=1024 count=200 2>/dev/null | tr '\\0' x"
    async with executor.open_job(spec(busybox_image, script)) as job:
        chunks = [chunk async for chunk in job.logs()]
        assert (await job.wait()).succeeded
    assert b"".join(c.data for c in chunks) == b"x" * 200 * 1024
    assert all(c.stream == "stdout" and 0 < len(c.data) <= 16 * 1024 for c in chunks)


async def test_concurrent_jobs_stay_apart(executor: DockerExecutor, busybox_image: str) -> None:
    results: dict[int, tuple[JobExit, bytes, bytes]] = {}

    async def run(n: int) -> None:
        script = f'echo job-{n}; printf out-{n} > "$DGPU_OUTPUT_DIR/r"; exit {n}'
        job_spec = JobSpec(job_id=f"job-{n}", image=busybox_image, command=("sh", "-c", script))
        async with executor.open_job(job_spec) as job:
            logs = b"".join([c.data async for c in job.logs()])
            result = await job.wait()
            await job.collect_outputs()
            results[n] = (result, logs, await job.read_output("r"))

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(run, n)
    assert results == {
        n: (JobExit(n, "exited"), f"job-{n}\n".encode(), f"out-{n}".encode()) for n in range(4)
    }


async def test_orphan_cleanup(
    executor: DockerExecutor, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    """What a provider killed mid-job leaves behind is found by its owner label."""
    owner = executor.config.owner
    other_owner = f"{owner}-other"

    def leave(job_id: str, who: str) -> None:
        labels = {JOB_LABEL: job_id, OWNER_LABEL: who}
        docker_client.volumes.create(name=f"{who}-{job_id}", labels=labels)
        docker_client.containers.create(busybox_image, ["sleep", "600"], labels=labels).start()

    leave("crashed-1", owner)
    leave("running-2", owner)
    leave("theirs-3", other_owner)
    try:
        removed = await executor.cleanup_orphans(owner, keep={"running-2"})
        assert removed == ["crashed-1"]
        assert leftovers(docker_client, f"{JOB_LABEL}=crashed-1") == []
        assert len(leftovers(docker_client, f"{JOB_LABEL}=running-2")) == 2
        assert len(leftovers(docker_client, f"{OWNER_LABEL}={other_owner}")) == 2
        assert await executor.cleanup_orphans(owner) == ["running-2"]
        assert leftovers(docker_client, f"{OWNER_LABEL}={owner}") == []
    finally:
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}={other_owner}"}
        ):
            c.remove(force=True)
        for v in docker_client.volumes.list(filters={"label": f"{OWNER_LABEL}={other_owner}"}):
            v.remove(force=True)


async def test_unreachable_engine_is_a_clear_error(tmp_path: object) -> None:
    config = DockerConfig(owner="x", base_url="unix:///nonexistent/docker.sock")
    with pytest.raises(ExecutorUnavailable, match="no Docker Engine answers"):
        async with open_docker_executor(config):
            pytest.fail("must not connect")


async def _echo_through(stream: PortStream, payload: bytes) -> bytes:
    got = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, payload)
        with trio.fail_after(20):
            while len(got) < len(payload):
                got += await stream.receive_some(65536)
    return got


async def test_a_port_of_a_networkless_container_is_reached_through_a_relay(
    executor: DockerExecutor, busybox_image: str
) -> None:
    # an echo server on the container's loopback; the container has no network at all
    script = "nc -ll -p 7000 -e cat & sleep 60"
    async with executor.open_job(spec(busybox_image, script)) as job:
        assert job.spec.network is False
        payload = os.urandom(300_000)
        with trio.fail_after(20):
            while True:  # until the server listens
                stream = await job.open_port(7000)
                try:
                    got = await _echo_through(stream, b"ping\n")
                    break
                except (ExecutorError, trio.TooSlowError):
                    await trio.sleep(0.2)
                finally:
                    await stream.aclose()
        assert got == b"ping\n"
        stream = await job.open_port(7000)
        try:
            assert await _echo_through(stream, payload) == payload
        finally:
            await stream.aclose()
        await job.kill()
    with pytest.raises(JobStateError):
        await job.open_port(7000)


def test_the_relay_falls_back_to_python_without_nc() -> None:
    from dgpu.node.executors.relay import PY_RELAY, relay_command

    argv = relay_command(8888, None)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["relay", "8888", PY_RELAY, ""]
    assert "python3" in argv[2] and "nc 127.0.0.1" in argv[2]
