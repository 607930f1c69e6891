"""Output collection and the log buffer, on hostile and oversized input."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.executors import (
    MAX_LOG_CHUNK,
    JobStateError,
    LogChunk,
    OutputError,
    OutputFile,
    OutputTooLarge,
)
from dgpu.node.executors.logs import LogBuffer
from dgpu.node.executors.outputs import extract_output_tar, read_output_file, scan_output_dir


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> list[bytes]:
    """A tar stream cut into small chunks, as the engine's archive API would stream it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buf.getvalue()
    return [raw[i : i + 1000] for i in range(0, len(raw), 1000)]


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info


def test_extracts_regular_files_only(tmp_path: Path) -> None:
    chunks = tar_of(
        (entry("out", tarfile.DIRTYPE), b""),
        (entry("out/a.txt"), b"alpha"),
        (entry("out/d", tarfile.DIRTYPE), b""),
        (entry("out/d/b.bin"), bytes(5000)),
        (entry("out/passwd", tarfile.SYMTYPE, "/etc/passwd"), b""),
        (entry("out/hard", tarfile.LNKTYPE, "out/a.txt"), b""),
        (entry("out/dev", tarfile.CHRTYPE), b""),
    )
    extract_output_tar(chunks, tmp_path, max_bytes=10_000)
    assert scan_output_dir(tmp_path, max_bytes=10_000) == [
        OutputFile("a.txt", hashlib.sha256(b"alpha").hexdigest(), 5),
        OutputFile("d/b.bin", hashlib.sha256(bytes(5000)).hexdigest(), 5000),
    ]


def test_member_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    chunks = tar_of((entry("out/../../evil"), b"x"))
    with pytest.raises(OutputError, match="escapes"):
        extract_output_tar(chunks, dest, max_bytes=100)
    assert not (tmp_path / "evil").exists()


def test_size_and_count_caps(tmp_path: Path) -> None:
    with pytest.raises(OutputTooLarge):
        extract_output_tar(tar_of((entry("out/big"), bytes(101))), tmp_path / "a", 100)
    many = tar_of(*[(entry(f"out/f{i}"), b"") for i in range(4)])
    with pytest.raises(OutputError, match="more than 3 output files"):
        extract_output_tar(many, tmp_path, max_bytes=100, max_files=3)


def test_corrupt_archive(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot copy"):
        extract_output_tar([b"not a tar" * 100], tmp_path, max_bytes=100)


def test_scan_skips_links_and_enforces_the_limit(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"12345")
    (tmp_path / "link").symlink_to("/etc/passwd")
    (tmp_path / "dirlink").symlink_to("/etc", target_is_directory=True)
    assert [f.path for f in scan_output_dir(tmp_path, 5)] == ["real"]
    with pytest.raises(OutputTooLarge):
        scan_output_dir(tmp_path, 4)


def test_read_refuses_links(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"0123456789")
    (tmp_path / "link").symlink_to("real")
    assert read_output_file(tmp_path, "real", offset=3, size=4) == b"3456"
    with pytest.raises(OutputError, match="cannot open"):
        read_output_file(tmp_path, "link")
    with pytest.raises(OutputError, match="outside"):
        read_output_file(tmp_path / "sub", "../real")


async def test_log_buffer_splits_orders_and_ends() -> None:
    buffer = LogBuffer(writers=2, max_buffered=1 << 20)
    big = bytes(MAX_LOG_CHUNK + 10)
    buffer.put("stdout", b"a")
    buffer.put("stderr", big)
    buffer.close_writer()
    buffer.close_writer()
    chunks = [c async for c in buffer.stream()]
    assert chunks == [
        LogChunk("stdout", b"a"),
        LogChunk("stderr", big[:MAX_LOG_CHUNK]),
        LogChunk("stderr", big[MAX_LOG_CHUNK:]),
    ]


async def test_log_buffer_never_blocks_writers_and_reports_drops() -> None:
    buffer = LogBuffer(writers=1, max_buffered=10)
    buffer.put("stdout", b"0123456789")
    buffer.put("stdout", b"lost")
    buffer.close_writer()
    chunks = [c async for c in buffer.stream()]
    assert chunks == [
        LogChunk("stderr", b"[dgpu] 4 bytes of log dropped (reader too slow)\n"),
        LogChunk("stdout", b"0123456789"),
    ]


async def test_log_reader_waits_for_writers() -> None:
    buffer = LogBuffer(writers=1)
    got: list[LogChunk] = []

    async def read() -> None:
        got.extend([c async for c in buffer.stream()])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        buffer.put("stdout", b"late")
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still waiting: the writer has not finished
        buffer.close_writer()
    assert got == [LogChunk("stdout", b"late")]


def test_logs_are_read_once() -> None:
    buffer = LogBuffer(writers=1)
    buffer.stream()
    with pytest.raises(JobStateError, match="only once"):
        buffer.stream()
