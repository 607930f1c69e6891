"""Outputs over the bulk channel, real TCP on 127.0.0.1: the provider's
:class:`BulkOutputHost` serves exactly a job's files to exactly its renter, and the
renter's :class:`BulkOutputFetcher` verifies them and resumes a dropped download."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
import msgspec
import pytest
import trio
from dgpu.cli.cmd_provider import _bulk_config
from dgpu.cli.nodeopts import CliSetupError
from dgpu.node.net.bulk import BulkServerConfig, bulk_addr, parse_bulk_addr
from dgpu.node.provider import BulkOutputHost, HostedFile, open_bulk_output_host
from dgpu.node.renter import BulkOutputFetcher, OutputMismatch
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import OutputFile, Quote

PROVIDER, RENTER, SNOOP = (Identity.from_label(n) for n in ("provider", "renter", "snoop"))
JOB_A, JOB_B = b"A" * 16, b"B" * 16
LIMIT = 8 * 1024 * 1024


def quote_for(job_id: bytes, address: str, **changes: object) -> Quote:
    quote = Quote(
        job_id=job_id,
        provider=PROVIDER.public_key,
        renter=RENTER.public_key,
        request_hash=bytes(32),
        gpu_model="RTX 4090",
        gpu_count=1,
        price_per_gpu_second=1,
        mint=bytes(32),
        program_id=bytes(32),
        interval_s=1,
        grace_s=1,
        max_duration_s=60,
        deposit=60,
        max_output_bytes=LIMIT,
        bulk_addr=address,
        expires_at=2**40,
    )
    return msgspec.structs.replace(quote, **changes)


def hosted(directory: Path, path: str, data: bytes) -> HostedFile:
    local = directory / path
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return HostedFile(path, hashlib.sha256(data).digest(), len(data), local)


def wanted(file: HostedFile) -> OutputFile:
    return OutputFile(path=file.path, sha256=file.sha256, size=file.size)


@dataclass
class Outputs:
    host: BulkOutputHost
    a: list[HostedFile]
    b: list[HostedFile]
    tmp: Path


@pytest.fixture
async def outputs(tmp_path: Path) -> AsyncIterator[Outputs]:
    """Job A (two files, one of them 3 MiB) and job B (one file), both of RENTER."""
    job_a = tmp_path / "outputs" / JOB_A.hex()
    a = [hosted(job_a, "big.bin", os.urandom(3 * 1024 * 1024 + 5)), hosted(job_a, "d/x", b"x")]
    b = [hosted(tmp_path / "outputs" / JOB_B.hex(), "b.txt", b"only job B's")]
    config = BulkServerConfig(header_timeout_s=2.0, idle_timeout_s=5.0)
    async with open_bulk_output_host(PROVIDER, tmp_path / "bulk", config) as host:
        host.publish(JOB_A, RENTER.public_key, a, max_bytes=LIMIT)
        host.publish(JOB_B, RENTER.public_key, b, max_bytes=LIMIT)
        yield Outputs(host, a, b, tmp_path)


async def test_the_renter_gets_its_files_verified_over_tcp(outputs: Outputs) -> None:
    host, port = parse_bulk_addr(outputs.host.address)
    assert host == "127.0.0.1" and port > 0
    fetcher = BulkOutputFetcher(RENTER)
    quote = quote_for(JOB_A, outputs.host.address)
    got = outputs.tmp / "got"
    for file in outputs.a:
        await fetcher.fetch(quote=quote, file=wanted(file), dest=got / file.path)
        assert (got / file.path).read_bytes() == file.local.read_bytes()
    assert sorted(p.name for p in got.rglob("*")) == ["big.bin", "d", "x"]  # no .part left
    assert fetcher.stats.files == 2 and fetcher.stats.resumed == 0
    assert fetcher.stats.bytes == sum(f.size for f in outputs.a)


async def test_another_key_and_ungranted_objects_are_refused(outputs: Outputs) -> None:
    quote = quote_for(JOB_A, outputs.host.address)
    big, b_only = outputs.a[0], outputs.b[0]
    dest = outputs.tmp / "got" / "f"
    # Someone else signing a ticket for job A's file: not the job's renter.
    with pytest.raises(OutputMismatch, match="another key than the job's renter"):
        await BulkOutputFetcher(SNOOP).fetch(quote=quote, file=wanted(big), dest=dest)
    renter = BulkOutputFetcher(RENTER)
    # The renter asking under job A for job B's file (in the store, not granted to A).
    with pytest.raises(OutputMismatch, match="not an output of this job"):
        await renter.fetch(quote=quote, file=wanted(b_only), dest=dest)
    # ... or for a job that published nothing.
    with pytest.raises(OutputMismatch, match="no bulk grant"):
        await renter.fetch(quote=quote_for(b"C" * 16, quote.bulk_addr), file=wanted(big), dest=dest)
    # A ticket naming the wrong size for a granted object.
    forged = OutputFile(path=big.path, sha256=big.sha256, size=big.size - 1)
    with pytest.raises(OutputMismatch, match="refused"):
        await renter.fetch(quote=quote, file=forged, dest=dest)
    assert not dest.exists() and not dest.with_name("f.part").exists()
    assert renter.stats.files == 0


async def test_withdrawn_outputs_are_refused_and_leave_the_store(outputs: Outputs) -> None:
    quote = quote_for(JOB_A, outputs.host.address)
    store = outputs.host.store
    outputs.host.withdraw(JOB_A)
    assert outputs.host.published(JOB_A) == frozenset()
    with pytest.raises(OutputMismatch, match="no bulk grant"):
        await BulkOutputFetcher(RENTER).fetch(
            quote=quote, file=wanted(outputs.a[1]), dest=outputs.tmp / "x"
        )
    assert not any(store.has(f.sha256) for f in outputs.a)
    assert store.has(outputs.b[0].sha256)  # job B's object stays while B is published
    # The provider's own output files are untouched (its retention removes them).
    assert all(f.local.exists() for f in outputs.a)


async def test_an_object_two_jobs_share_stays_until_both_withdrew(outputs: Outputs) -> None:
    same = hosted(outputs.tmp / "outputs" / "c", "copy.txt", b"only job B's")
    outputs.host.publish(b"C" * 16, RENTER.public_key, [same], max_bytes=LIMIT)
    outputs.host.withdraw(JOB_B)
    assert outputs.host.store.has(same.sha256)
    await BulkOutputFetcher(RENTER).fetch(
        quote=quote_for(b"C" * 16, outputs.host.address),
        file=wanted(same),
        dest=outputs.tmp / "got" / "copy.txt",
    )
    outputs.host.withdraw(b"C" * 16)
    assert not outputs.host.store.has(same.sha256)


async def test_a_file_over_the_agreed_limit_is_not_fetched(outputs: Outputs) -> None:
    quote = quote_for(JOB_A, outputs.host.address, max_output_bytes=1024)
    with pytest.raises(OutputMismatch, match="exceed the agreed limit"):
        await BulkOutputFetcher(RENTER).fetch(
            quote=quote, file=wanted(outputs.a[0]), dest=outputs.tmp / "big"
        )
    # The provider's grant holds the agreed limit too.
    outputs.host.publish(JOB_A, RENTER.public_key, outputs.a, max_bytes=1024)
    with pytest.raises(OutputMismatch, match="over the agreed limit"):
        await BulkOutputFetcher(RENTER).fetch(
            quote=quote_for(JOB_A, outputs.host.address),
            file=wanted(outputs.a[0]),
            dest=outputs.tmp / "big",
        )


class CuttingProxy:
    """A TCP relay in front of the bulk server that closes each of its first ``times``
    connections after ``cut`` bytes towards the client; ``sent`` counts the bytes each
    connection carried to the client."""

    def __init__(self, upstream: str, cut: int, *, times: int = 1) -> None:
        self.upstream = parse_bulk_addr(upstream)
        self.cut = cut
        self.times = times
        self.sent: list[int] = []

    async def handle(self, client: trio.SocketStream) -> None:
        limit = self.cut if len(self.sent) < self.times else None
        self.sent.append(0)
        index = len(self.sent) - 1
        server = await trio.open_tcp_stream(*self.upstream)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._up, client, server)
            while data := await server.receive_some(65536):
                if limit is not None:
                    data = data[: limit - self.sent[index]]
                await client.send_all(data)
                self.sent[index] += len(data)
                if limit is not None and self.sent[index] >= limit:
                    break
            nursery.cancel_scope.cancel()

    async def _up(self, client: trio.SocketStream, server: trio.SocketStream) -> None:
        while data := await client.receive_some(65536):
            await server.send_all(data)


async def test_a_dropped_download_resumes_once(outputs: Outputs) -> None:
    big = outputs.a[0]
    proxy = CuttingProxy(outputs.host.address, cut=1024 * 1024)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        quote = quote_for(JOB_A, bulk_addr("127.0.0.1", port))
        fetcher = BulkOutputFetcher(RENTER)
        dest = outputs.tmp / "got" / "big.bin"
        await fetcher.fetch(quote=quote, file=wanted(big), dest=dest)
        nursery.cancel_scope.cancel()
    assert dest.read_bytes() == big.local.read_bytes()
    assert fetcher.stats.resumed == 1
    first, second = proxy.sent
    assert first == 1024 * 1024
    assert second < big.size  # the second connection carried only the rest


async def test_a_download_dropped_twice_fails_and_leaves_nothing(outputs: Outputs) -> None:
    proxy = CuttingProxy(outputs.host.address, cut=4096, times=2)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1")
        )
        quote = quote_for(JOB_A, bulk_addr("127.0.0.1", listener.socket.getsockname()[1]))
        dest = outputs.tmp / "got" / "big.bin"
        with pytest.raises(DgpuError, match="short"):
            await BulkOutputFetcher(RENTER).fetch(quote=quote, file=wanted(outputs.a[0]), dest=dest)
        nursery.cancel_scope.cancel()
    assert proxy.sent == [4096, 4096]
    assert not dest.exists() and not dest.with_name("big.bin.part").exists()


class Recording:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def fetch(self, *, quote: Quote, file: OutputFile, dest: Path) -> None:
        await trio.lowlevel.checkpoint()
        self.asked.append(file.path)


async def test_quotes_without_a_bulk_address_go_to_the_fallback(tmp_path: Path) -> None:
    quote = quote_for(JOB_A, "")
    file = OutputFile(path="a.txt", sha256=bytes(32), size=1)
    with pytest.raises(OutputMismatch, match="no bulk address"):
        await BulkOutputFetcher(RENTER).fetch(quote=quote, file=file, dest=tmp_path / "a")
    fallback = Recording()
    fetcher = BulkOutputFetcher(RENTER, fallback=fallback)
    await fetcher.fetch(quote=quote, file=file, dest=tmp_path / "a")
    assert fallback.asked == ["a.txt"] and fetcher.stats.via_fallback == 1


async def test_listening_everywhere_needs_an_announced_address(tmp_path: Path) -> None:
    wildcard = BulkServerConfig(host="0.0.0.0")  # noqa: S104 (refused before binding)
    with pytest.raises(DgpuError, match="name the address to announce"):
        async with open_bulk_output_host(PROVIDER, tmp_path / "bulk", wildcard):
            pass


async def test_a_restarted_host_starts_from_an_empty_store(tmp_path: Path) -> None:
    stale = tmp_path / "bulk" / ("ab" * 32)
    stale.parent.mkdir()
    stale.write_bytes(b"left by a previous life")
    config = BulkServerConfig(port=0)
    async with open_bulk_output_host(
        PROVIDER, tmp_path / "bulk", config, announce_host="127.0.0.2"
    ) as host:
        assert not stale.exists()
        assert parse_bulk_addr(host.address)[0] == "127.0.0.2"


@pytest.mark.parametrize(
    ("listen", "announce", "problem"),
    [
        ("127.0.0.1", None, "not HOST:PORT"),
        (":9000", None, "not HOST:PORT"),
        ("127.0.0.1:99999", None, "not HOST:PORT"),
        ("0.0.0.0:9000", None, "--bulk-announce"),
    ],
)
def test_dgpu_provider_start_checks_bulk_listen(
    listen: str, announce: str | None, problem: str
) -> None:
    with pytest.raises((click.BadParameter, CliSetupError), match=problem):
        _bulk_config(listen, announce)


def test_bulk_listen_everywhere_with_an_announced_host() -> None:
    everywhere = "0.0.0.0"  # noqa: S104 (checked, never bound here)
    config = _bulk_config(f"{everywhere}:9000", "203.0.113.7")
    assert (config.host, config.port) == (everywhere, 9000)
