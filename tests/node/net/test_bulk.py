"""The bulk channel over real TCP on 127.0.0.1: authorised, verified, resumable."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from dgpu.node.net import BulkError, IntegrityError, TicketRefused
from dgpu.node.net.bulk import (
    BulkGrant,
    BulkGrants,
    BulkServerConfig,
    BulkTicket,
    ContentStore,
    fetch,
    make_ticket,
    parse_bulk_addr,
    push,
    serve_bulk,
)
from dgpu.protocol import Identity

PROVIDER, RENTER, MALLORY = (Identity.from_label(n) for n in ("provider", "renter", "mallory"))
JOB = bytes(range(16))
SIZE = 3 * 1024 * 1024 + 17


@dataclass
class Bulk:
    addr: str
    store: ContentStore
    grants: BulkGrants
    sha: bytes
    data: bytes
    tmp: Path


@pytest.fixture
async def bulk(tmp_path: Path) -> AsyncIterator[Bulk]:
    store = ContentStore(tmp_path / "store")
    data = os.urandom(SIZE)
    sha, _ = await store.add_bytes(data)
    grants = BulkGrants()
    grants.grant(
        BulkGrant(job_id=JOB, renter=RENTER.public_key, max_bytes=8 * 1024 * 1024, may_put=True)
    )
    config = BulkServerConfig(header_timeout_s=1.0, idle_timeout_s=2.0)
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(
            lambda task_status: serve_bulk(
                store,
                grants,
                PROVIDER,
                config,
                clock=lambda: 1_700_000_000,
                task_status=task_status,
            )
        )
        yield Bulk(addr, store, grants, sha, data, tmp_path)
        nursery.cancel_scope.cancel()


def ticket_for(bulk: Bulk, signer: Identity = RENTER, **changes: object) -> BulkTicket:
    fields: dict[str, object] = {
        "job_id": JOB,
        "server": PROVIDER.public_key,
        "op": "get",
        "sha256": bulk.sha,
        "size": len(bulk.data),
        "expires_at": 1_700_000_600,
    }
    fields.update(changes)
    return make_ticket(signer, **fields)  # type: ignore[arg-type]


async def test_fetch_is_verified(bulk: Bulk) -> None:
    dest = bulk.tmp / "out.bin"
    assert await fetch(bulk.addr, ticket_for(bulk), dest) == dest
    assert dest.read_bytes() == bulk.data
    assert not dest.with_name("out.bin.part").exists()


async def test_fetch_resumes_from_a_partial_file(bulk: Bulk) -> None:
    dest = bulk.tmp / "out.bin"
    dest.with_name("out.bin.part").write_bytes(bulk.data[: SIZE // 2])
    await fetch(bulk.addr, ticket_for(bulk), dest)
    assert dest.read_bytes() == bulk.data


async def test_a_corrupt_partial_file_is_detected_and_dropped(bulk: Bulk) -> None:
    dest = bulk.tmp / "out.bin"
    partial = dest.with_name("out.bin.part")
    partial.write_bytes(b"\x00" * 1000)
    with pytest.raises(IntegrityError):
        await fetch(bulk.addr, ticket_for(bulk), dest)
    assert not partial.exists() and not dest.exists()
    await fetch(bulk.addr, ticket_for(bulk), dest)
    assert dest.read_bytes() == bulk.data


async def test_a_server_serving_other_bytes_is_caught(bulk: Bulk) -> None:
    bulk.store.path(bulk.sha).write_bytes(os.urandom(SIZE))  # same name, other content
    with pytest.raises(IntegrityError):
        await fetch(bulk.addr, ticket_for(bulk), bulk.tmp / "out.bin")


@pytest.mark.parametrize(
    "flaw",
    ["forged", "other job", "expired", "other server", "not an output", "over the limit"],
)
async def test_unauthorised_tickets_are_refused(bulk: Bulk, flaw: str) -> None:
    if flaw == "not an output":
        bulk.grants.grant(
            BulkGrant(
                job_id=JOB, renter=RENTER.public_key, max_bytes=SIZE, objects=frozenset({bytes(32)})
            )
        )
    if flaw == "over the limit":
        bulk.grants.grant(BulkGrant(job_id=JOB, renter=RENTER.public_key, max_bytes=SIZE - 1))
    ticket = {
        "forged": ticket_for(bulk, MALLORY),
        "other job": ticket_for(bulk, job_id=bytes(16)),
        "expired": ticket_for(bulk, expires_at=1_699_999_999),
        "other server": ticket_for(bulk, server=MALLORY.public_key),
        "not an output": ticket_for(bulk),
        "over the limit": ticket_for(bulk),
    }[flaw]
    with pytest.raises(BulkError) as info:
        await fetch(bulk.addr, ticket, bulk.tmp / "out.bin")
    assert isinstance(info.value, TicketRefused) or "limit" in str(info.value)
    assert not (bulk.tmp / "out.bin").exists()


async def test_push_verifies_and_resumes(bulk: Bulk) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    sha = hashlib.sha256(data).digest()
    source = bulk.tmp / "input.bin"
    source.write_bytes(data)
    ticket = ticket_for(bulk, op="put", sha256=sha, size=len(data))
    bulk.store.partial(sha).write_bytes(data[:1000])  # an earlier upload stopped here
    await push(bulk.addr, ticket, source)
    assert bulk.store.path(sha).read_bytes() == data
    await push(bulk.addr, ticket, source)  # already there: nothing to send


async def test_push_of_other_bytes_is_refused(bulk: Bulk) -> None:
    source = bulk.tmp / "input.bin"
    source.write_bytes(os.urandom(4096))
    claimed = hashlib.sha256(b"something else").digest()
    ticket = ticket_for(bulk, op="put", sha256=claimed, size=4096)
    with pytest.raises(IntegrityError):
        await push(bulk.addr, ticket, source)
    assert not bulk.store.has(claimed) and not bulk.store.partial(claimed).exists()


@pytest.mark.parametrize(
    "garbage",
    [struct.pack(">I", 2**31), struct.pack(">I", 10) + b"\xc1" * 10, struct.pack(">I", 100)],
    ids=["huge-header", "undecodable-header", "stalled-header"],
)
async def test_hostile_clients_are_cut_off(bulk: Bulk, garbage: bytes) -> None:
    host, port = parse_bulk_addr(bulk.addr)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(garbage)
        with trio.fail_after(10):
            while await stream.receive_some(4096):
                pass  # a refusal header may come first, then the close
    await fetch(bulk.addr, ticket_for(bulk), bulk.tmp / "out.bin")
    assert (bulk.tmp / "out.bin").read_bytes() == bulk.data
