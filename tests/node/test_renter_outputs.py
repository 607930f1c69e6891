"""Output transfer: only the job's renter gets the files, only with the published content,
and a provider cannot make the renter write outside its output directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.net import PeerRef, open_memory_network
from dgpu.node.provider import OUTPUTS_PROTOCOL
from dgpu.node.renter import OutputMismatch
from dgpu.node.renter.job import confined
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import ErrorMessage, OutputFile, OutputManifest

from tests.node.rolekit import job_spec, memory_market


async def test_only_the_renter_gets_the_published_files(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        spec = job_spec("echo secret > /out/s.txt", output_dir="/out", max_output_bytes=100)
        result = await m.renter.run_job(spec, output_dir=tmp_path / "mine")
        (out,) = result.outputs
        wanted = OutputFile(path=out.path, sha256=bytes.fromhex(out.sha256), size=out.size)
        ask = OutputManifest(job_id=result.job_id, files=[wanted])
        provider = PeerRef(m.provider_id.peer_id)
        # Someone else asking for the same file is refused.
        async with open_memory_network(m.hub, Identity.from_label("snoop")) as snoop:
            reply = await snoop.request(provider, OUTPUTS_PROTOCOL, ask)
        assert isinstance(reply, ErrorMessage) and reply.code == "unknown_job"
        # The renter asking for other content under the same name is refused too.
        forged = OutputFile(path=out.path, sha256=hashlib.sha256(b"x").digest(), size=out.size)
        reply = await m.renter.network.request(
            provider, OUTPUTS_PROTOCOL, OutputManifest(job_id=result.job_id, files=[forged])
        )
        assert isinstance(reply, ErrorMessage) and reply.code == "bad_request"
        # After the retention time the files are withdrawn and deleted.
        await trio.sleep(m.provider.config.output_retention_s + 1)
        reply = await m.renter.network.request(provider, OUTPUTS_PROTOCOL, ask)
        assert isinstance(reply, ErrorMessage) and reply.code == "unknown_job"
        assert not (tmp_path / "m-outputs" / result.job_id.hex()).exists()


async def test_outputs_move_without_worker_threads(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A task waiting on a worker thread counts as blocked for the autojump clock (trio
    issue #456), so a thread hop in the output path let virtual time leap past the read
    timeout and the output retention: the renter was refused its own outputs. With every
    worker thread held back, the outputs still arrive, and no virtual time passes."""
    limiter = trio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = 1
    async with memory_market(tmp_path) as m, limiter:
        spec = job_spec("echo 42 > /out/answer.txt", output_dir="/out", max_output_bytes=100)
        with trio.fail_after(m.provider.config.output_retention_s / 2):
            result = await m.renter.run_job(spec, output_dir=tmp_path / "got")
        (out,) = result.outputs
        assert out.local is not None and out.local.read_bytes() == b"42\n"
        assert not out.local.with_name("answer.txt.part").exists()


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../b", "..", "."])
def test_output_paths_cannot_escape_the_output_directory(tmp_path: Path, path: str) -> None:
    with pytest.raises(OutputMismatch, match="outside the output directory"):
        confined(tmp_path, path)


def test_output_paths_inside_are_kept(tmp_path: Path) -> None:
    assert confined(tmp_path, "a/./b/../c.txt") == tmp_path / "a" / "c.txt"
