"""The node store: migrations, jobs, receipts, settlements, channels, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dgpu.node.store import (
    ChannelRecord,
    JobRecord,
    NodeStore,
    RecordNotFound,
    SchemaTooNew,
)
from dgpu.node.store.schema import MIGRATIONS
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt, verify_receipt

RENTER = Identity.from_label("store-renter")
PROGRAM = bytes(range(32))
CHANNEL = bytes([7]) * 32
JOB = bytes(16)


def receipt(cumulative: int, *, seq: int = 1, channel: bytes = CHANNEL, nonce: int = 1) -> Receipt:
    return sign_receipt(
        Receipt(
            job_id=JOB,
            seq=seq,
            renter=RENTER.public_key,
            program_id=PROGRAM,
            channel=channel,
            open_nonce=nonce,
            cumulative=cumulative,
        ),
        RENTER,
    )


def test_fresh_store_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.sqlite"
    with NodeStore.open(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with NodeStore.open(path) as again:  # reopening runs no migration twice
        assert again.schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    NodeStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match="newer than this dgpu knows"):
        NodeStore.open(path)


def test_jobs_insert_update_and_query(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.sqlite") as store:
        store.insert_job(
            JobRecord(
                job_id=JOB,
                role="provider",
                state="agreed",
                counterparty=RENTER.public_key,
                created_at=10,
                updated_at=10,
                quote=b"q",
            )
        )
        store.update_job(JOB, "provider", now=20, state="running", container="c1", started_at=19)
        job = store.get_job(JOB, "provider")
        assert job is not None
        assert (job.state, job.container, job.started_at, job.updated_at) == (
            "running",
            "c1",
            19,
            20,
        )
        assert job.live
        assert store.get_job(JOB, "renter") is None
        assert [j.job_id for j in store.jobs("provider", states=frozenset({"running"}))] == [JOB]
        assert store.jobs("provider", states=frozenset({"succeeded"})) == []
        with pytest.raises(RecordNotFound):
            store.update_job(bytes([1]) * 16, "provider", now=1, state="failed")
        with pytest.raises(ValueError, match="not job columns"):
            store.update_job(JOB, "provider", now=1, counterparty=b"x", bogus=1)


def test_receipts_keep_the_highest_per_channel_and_round_trip_signatures(tmp_path: Path) -> None:
    other = bytes([9]) * 32
    with NodeStore.open(tmp_path / "n.sqlite") as store:
        assert store.save_receipt("provider", receipt(100, seq=1), now=1)
        assert store.save_receipt("provider", receipt(300, seq=3), now=3)
        assert store.save_receipt("provider", receipt(200, seq=2), now=2)
        assert not store.save_receipt("provider", receipt(300, seq=3), now=4)  # duplicate
        assert store.save_receipt("provider", receipt(50, channel=other), now=5)
        latest = store.latest_receipt("provider", JOB)
        assert latest is not None and latest.cumulative == 300
        verify_receipt(latest)  # the signature survived the round trip
        assert [r.cumulative for r in store.receipts("provider", JOB)] == [50, 100, 200, 300]
        by_channel = {r.channel: r.cumulative for r in store.latest_receipts("provider")}
        assert by_channel == {CHANNEL: 300, other: 50}
        assert store.latest_receipts("renter") == []


def test_settlement_progress_hides_paid_channels(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.sqlite") as store:
        store.save_receipt("provider", receipt(100), now=1)
        assert [r.cumulative for r in store.unsettled_receipts()] == [100]
        store.record_settlement(receipt(100), status="handed_off", via="coordinator", now=2)
        assert [r.cumulative for r in store.unsettled_receipts()] == [100]
        store.record_settlement(receipt(100), status="settled", paid_on_chain=100, now=3)
        assert store.unsettled_receipts() == []
        store.save_receipt("provider", receipt(150, seq=2), now=4)
        assert [r.cumulative for r in store.unsettled_receipts()] == [150]
        # A late, lower status never lowers what was recorded as paid.
        store.record_settlement(receipt(100), status="failed", error="x", now=5)
        record = store.settlement(CHANNEL, 1)
        assert record is not None
        assert (record.cumulative, record.paid_on_chain, record.status) == (100, 100, "failed")


def test_channels(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.sqlite") as store:
        store.save_channel(
            ChannelRecord(
                channel=CHANNEL,
                job_id=JOB,
                provider=bytes(32),
                mint=bytes(32),
                deposit=1000,
                open_nonce=3,
                expires_at=99,
                open_signature="sig",
                status="open",
                reclaim_signature="",
                reclaimed=0,
                updated_at=1,
            )
        )
        assert [c.channel for c in store.channels(status="open")] == [CHANNEL]
        store.update_channel(
            CHANNEL, status="reclaimed", reclaimed=400, reclaim_signature="r", now=2
        )
        record = store.channel_of_job(JOB)
        assert record is not None and (record.status, record.reclaimed) == ("reclaimed", 400)
        assert store.channels(status="open") == []
        with pytest.raises(RecordNotFound):
            store.update_channel(bytes(32), status="closed", now=3)


def test_keys_metadata(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.sqlite") as store:
        store.record_key(
            address=RENTER.address, peer_id=RENTER.peer_id, role="renter", path="/k", now=1
        )
        store.record_key(
            address=RENTER.address, peer_id=RENTER.peer_id, role="provider", path="/k", now=5
        )
        (key,) = store.keys()
        assert (key["role"], key["first_seen"], key["last_used"]) == ("provider", 1, 5)


def test_a_stored_receipt_survives_kill_9(tmp_path: Path) -> None:
    """The child stores receipts and reports each one only once save_receipt returned; it
    is killed with SIGKILL right after the third report. All reported receipts are there."""
    path = tmp_path / "n.sqlite"
    child = textwrap.dedent(
        f"""
        import sys, time
        from tests.node.test_store import receipt
        from dgpu.node.store import NodeStore
        store = NodeStore.open({str(path)!r})
        for n in range(1, 1000):
            store.save_receipt("provider", receipt(n * 10, seq=n), now=n)
            sys.stdout.write(f"{{n * 10}}\\n")
            sys.stdout.flush()
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = [int(proc.stdout.readline()) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with NodeStore.open(path) as store:
        latest = store.latest_receipt("provider", JOB)
    assert latest is not None
    assert latest.cumulative >= acknowledged[-1]
