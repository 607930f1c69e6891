"""Inputs over the bulk channel (TCP on loopback here; libp2p in the e2e tests): only the
listed objects of an agreed job, a cut upload resumes where the provider's copy stopped,
the tree is built read-only with its in-tree symlinks, a dropped job leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from dgpu.node.net.bulk import BULK_PROTOCOL, parse_bulk_addr
from dgpu.node.net.bulk.wire import TcpByteStream
from dgpu.node.net.errors import StreamReset
from dgpu.node.net.framing import ByteStream
from dgpu.node.provider import open_bulk_output_host
from dgpu.node.provider.bulk_inputs import InputDesk, InputsMissing, remove_tree
from dgpu.node.renter import InputError, InputUploader, scan_inputs

from tests.node.test_bulk_outputs import PROVIDER, RENTER, quote_for

JOB = bytes(range(16))


class CutAfter:
    """A byte stream that breaks after ``limit`` bytes were sent (once)."""

    def __init__(self, inner: ByteStream, limit: int, sent: list[int]) -> None:
        self.inner, self.limit, self.sent = inner, limit, sent

    async def send_all(self, data: bytes) -> None:
        if self.limit >= 0 and self.sent[0] + len(data) > self.limit:
            raise StreamReset("cut")
        self.sent[0] += len(data)
        await self.inner.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def reset(self) -> None:
        await self.inner.reset()


async def test_a_cut_upload_resumes_and_the_tree_is_built_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    big = os.urandom(6 * 1024 * 1024)
    (data / "big.bin").write_bytes(big)
    (data / "sub" / "small.txt").write_text("small")
    os.symlink("sub/small.txt", data / "link")
    tree = await scan_inputs([data])
    async with open_bulk_output_host(PROVIDER, tmp_path / "bulk") as host:
        desk = InputDesk(host, tmp_path / "inputs")
        desk.expect(JOB, RENTER.public_key, tree.files)
        host_addr = parse_bulk_addr(host.address)
        sent = [0]
        attempts: list[int] = []

        async def open_stream(peer: str, protocol: str) -> ByteStream:
            assert protocol == BULK_PROTOCOL
            attempts.append(sent[0])
            stream = TcpByteStream(await trio.open_tcp_stream(*host_addr))
            # the first attempt is cut after 2 MiB of the big file
            return CutAfter(stream, 2 * 1024 * 1024 if len(attempts) == 1 else -1, sent)

        uploader = InputUploader(RENTER, open_stream=open_stream)
        quote = quote_for(JOB, BULK_PROTOCOL, max_input_bytes=tree.size)
        await uploader.upload(quote, tree)
        assert uploader.stats.resumed == 1 and uploader.stats.files == 2
        # the second attempt sent only the rest: nothing twice
        assert sent[0] < len(big) + 64 * 1024
        assert desk.missing(JOB) == []
        dest = await desk.materialise(JOB, tree.files)
        assert (dest / "data" / "big.bin").read_bytes() == big
        assert (dest / "data" / "link").read_text() == "small"
        assert os.readlink(dest / "data" / "link") == "sub/small.txt"
        # read-only files and folders (the container also gets a read-only mount)
        assert (dest / "data").stat().st_mode & 0o777 == 0o555
        assert (dest / "data" / "big.bin").stat().st_mode & 0o777 == 0o444
        # the uploads left the store once the tree was built; the grant is gone
        assert list((tmp_path / "bulk").iterdir()) == []
        with pytest.raises(InputError, match="no bulk grant"):
            await uploader.upload(quote, tree)
        await trio.to_thread.run_sync(remove_tree, dest)
        assert not dest.exists()


async def test_only_listed_objects_and_a_dropped_job_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(300_000))
    tree = await scan_inputs([data])
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.bin").write_bytes(b"not listed")
    unlisted = await scan_inputs([other])
    async with open_bulk_output_host(PROVIDER, tmp_path / "bulk") as host:
        desk = InputDesk(host, tmp_path / "inputs")
        desk.expect(JOB, RENTER.public_key, tree.files)
        uploader = InputUploader(RENTER)
        quote = quote_for(JOB, host.address, max_input_bytes=unlisted.size)
        with pytest.raises(InputError, match="not an agreed input"):
            await uploader.upload(quote, unlisted)
        # a job funded without its inputs is refused
        with pytest.raises(InputsMissing, match="1 of the listed inputs"):
            await desk.materialise(JOB, tree.files)
        await uploader.upload(quote_for(JOB, host.address, max_input_bytes=tree.size), tree)
        assert desk.missing(JOB) == []
        desk.drop(JOB)
        assert list((tmp_path / "bulk").iterdir()) == []
