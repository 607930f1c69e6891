"""LocalProcessExecutor: real processes, their process group, their working directory."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import trio
from dgpu.node.executors import (
    ExecutorUnavailable,
    JobExit,
    JobSpec,
    JobStartError,
    JobStateError,
    LocalProcessConfig,
    LocalProcessExecutor,
    OutputError,
    OutputFile,
    OutputTooLarge,
)
from dgpu.protocol.messages import GpuVendor


@pytest.fixture
def executor(tmp_path: Path) -> LocalProcessExecutor:
    return LocalProcessExecutor(
        LocalProcessConfig(enabled=True, workdir=tmp_path, stop_grace_s=1.0)
    )


def spec(script: str, **kwargs: object) -> JobSpec:
    return JobSpec(job_id="local-1", image="-", command=("sh", "-c", script), **kwargs)  # type: ignore[arg-type]


def test_disabled_unless_enabled() -> None:
    with pytest.raises(ExecutorUnavailable, match="enable it explicitly"):
        LocalProcessExecutor(LocalProcessConfig())


async def test_job_logs_exit_code_and_outputs(
    executor: LocalProcessExecutor, tmp_path: Path
) -> None:
    script = (
        "echo hello; echo warning >&2; "
        'mkdir "$DGPU_OUTPUT_DIR/sub"; printf result-data > "$DGPU_OUTPUT_DIR/sub/result.txt"; '
        'ln -s /etc/passwd "$DGPU_OUTPUT_DIR/link"'
    )
    logs = {"stdout": bytearray(), "stderr": bytearray()}
    async with executor.open_job(spec(script)) as job:
        assert job.workdir.parent == tmp_path
        async for chunk in job.logs():
            logs[chunk.stream] += chunk.data
        result = await job.wait()
        outputs = await job.collect_outputs()
        data = await job.read_output("sub/result.txt")
        with pytest.raises(OutputError, match="no output file"):
            await job.read_output("link")
    assert result == JobExit(0, "exited")
    assert logs == {"stdout": b"hello\n", "stderr": b"warning\n"}
    assert outputs == [OutputFile("sub/result.txt", hashlib.sha256(b"result-data").hexdigest(), 11)]
    assert data == b"result-data"
    assert not job.workdir.exists()


async def test_environment_is_minimal(
    executor: LocalProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVIDER_SECRET", "do-not-leak")
    job_spec = spec("env", env={"MINE": "1"}, gpu_ids=("GPU-a", "GPU-b"))
    async with executor.open_job(job_spec) as job:
        out = b"".join([c.data async for c in job.logs()]).decode()
        assert (await job.wait()).succeeded
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert "PROVIDER_SECRET" not in names
    assert {"MINE", "DGPU_JOB_ID", "DGPU_OUTPUT_DIR", "PATH", "HOME"} <= names
    assert "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b" in out.splitlines()


@pytest.mark.parametrize("vendor", ["apple", "amd"])
async def test_no_cuda_variable_for_other_vendors(
    executor: LocalProcessExecutor, vendor: GpuVendor
) -> None:
    job_spec = spec('test -z "$CUDA_VISIBLE_DEVICES"', gpu_ids=("apple-gpu-0",))
    job_spec = dataclasses.replace(job_spec, gpu_vendor=vendor)
    async with executor.open_job(job_spec) as job:
        assert (await job.wait()).succeeded


async def test_simulated_gpus_are_not_exposed(executor: LocalProcessExecutor) -> None:
    job_spec = spec('test -z "$CUDA_VISIBLE_DEVICES"', gpu_ids=("0",), gpus_simulated=True)
    async with executor.open_job(job_spec) as job:
        assert (await job.wait()).succeeded


async def test_failing_command(executor: LocalProcessExecutor) -> None:
    async with executor.open_job(spec("exit 3")) as job:
        assert await job.wait() == JobExit(3, "exited")
    assert not job.workdir.exists()


async def test_no_network_without_permission(executor: LocalProcessExecutor) -> None:
    async with executor.open_job(spec("cat /proc/net/dev")) as job:
        out = b"".join([c.data async for c in job.logs()]).decode()
        assert (await job.wait()).succeeded
    interfaces = [line.split(":")[0].strip() for line in out.splitlines() if ":" in line]
    assert interfaces == ["lo"]


async def test_memory_limit(executor: LocalProcessExecutor) -> None:
    async with executor.open_job(spec("ulimit -v", memory_limit_mb=256)) as job:
        out = b"".join([c.data async for c in job.logs()])
        assert (await job.wait()).succeeded
    assert out.strip() == str(256 * 1024).encode()


async def test_cancel_kills_the_whole_process_group(executor: LocalProcessExecutor) -> None:
    script = 'sleep 600 & echo $! > "$DGPU_OUTPUT_DIR/child"; echo started; wait'
    child_fd = -1
    with trio.CancelScope() as scope:
        async with executor.open_job(spec(script)) as job:
            async for chunk in job.logs():
                if b"started" in chunk.data:
                    child = int((job.output_dir / "child").read_text())
                    child_fd = os.pidfd_open(child)  # readable once the child has ended
                    scope.cancel()
                    await job.wait()
    assert scope.cancelled_caught
    try:
        with trio.fail_after(30):  # the background `sleep 600` of the job must be killed
            await trio.lowlevel.wait_readable(child_fd)
    finally:
        os.close(child_fd)
    assert not job.workdir.exists()
    assert await job.wait() == JobExit(128 + 9, "stopped")


async def test_timeout(executor: LocalProcessExecutor) -> None:
    async with executor.open_job(spec("exec sleep 600", timeout_s=0.2)) as job:
        result = await job.wait()
    assert result == JobExit(128 + 15, "timeout")  # SIGTERM was enough


async def test_stop_escalates_to_kill(executor: LocalProcessExecutor) -> None:
    script = "trap '' TERM; echo ignoring; while :; do sleep 1; done"
    async with executor.open_job(spec(script)) as job:
        async for chunk in job.logs():
            if b"ignoring" in chunk.data:
                break
        await job.stop(grace_s=0.2)
        assert await job.wait() == JobExit(128 + 9, "stopped")


async def test_kill(executor: LocalProcessExecutor) -> None:
    async with executor.open_job(spec("exec sleep 600")) as job:
        await job.kill()
        assert await job.wait() == JobExit(128 + 9, "stopped")


async def test_outputs_only_after_exit_and_within_the_limit(
    executor: LocalProcessExecutor,
) -> None:
    script = 'head -c 2000 /dev/zero > "$DGPU_OUTPUT_DIR/big"; echo done; sleep 600'
    async with executor.open_job(spec(script, max_output_bytes=1000)) as job:
        async for chunk in job.logs():
            if b"done" in chunk.data:
                break
        with pytest.raises(JobStateError):
            await job.collect_outputs()
        await job.kill()
        with pytest.raises(OutputTooLarge):
            await job.collect_outputs()


async def test_missing_program(executor: LocalProcessExecutor, tmp_path: Path) -> None:
    bad = JobSpec(job_id="x", image="-", command=("/no/such/program",), network=True)
    with pytest.raises(JobStartError, match="no/such/program"):
        async with executor.open_job(bad):
            pytest.fail("must not start")
    assert os.listdir(tmp_path) == []


async def test_the_input_tree_and_a_port_of_a_local_job(
    executor: LocalProcessExecutor, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "x.txt").write_text("from the renter")
    script = 'cat "$DGPU_INPUT_DIR/x.txt"'
    logs = bytearray()
    async with executor.open_job(spec(script, input_dir=inputs)) as job:
        async for chunk in job.logs():
            logs += chunk.data
        assert await job.wait() == JobExit(0, "exited")
    assert bytes(logs) == b"from the renter"
    # a local job's port is a host port: the executor connects to 127.0.0.1:PORT
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with executor.open_job(spec("sleep 5")) as job:
        stream = await job.open_port(port)
        async with listeners[0]:
            server = await listeners[0].accept()
            await stream.send_all(b"hi")
            assert await server.receive_some(2) == b"hi"
            await stream.send_eof()
            assert await server.receive_some(2) == b""
            await server.aclose()
        await stream.aclose()
        await job.kill()
