"""Storage faults under the node store, on real filesystems: a full disk (a small tmpfs,
filled), a read-only remount, another process's write lock, a corrupt file. Each raises
a typed error that says in words what is wrong, and keeps what was stored."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dgpu.node.store import (
    NodeStore,
    StoreCorrupt,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
)

from tests.node.test_store import receipt


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (we are root on the test machines; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem is full (ENOSPC)."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_disk_is_named_and_loses_nothing(small_disk: Path) -> None:
    with NodeStore.open(small_disk / "node.sqlite") as store:
        assert store.save_receipt("provider", receipt(100), now=1)
        filler = fill(small_disk)
        failures = []
        for i in range(2, 200):  # the WAL must grow; a few writes may fit in its slack
            try:
                store.save_receipt("provider", receipt(100 * i, seq=i), now=i)
            except StoreFull as exc:
                failures.append(exc)
                break
        assert failures, "the disk never filled"
        message = str(failures[0])
        assert "disk full (ENOSPC)" in message and str(small_disk) in message
        assert "rollback" not in message
        stored = store.latest_receipt("provider", receipt(1).job_id)
        assert stored is not None
        with pytest.raises(StoreFull):
            store.check_writable()
        filler.unlink()
        store.check_writable()
        higher = stored.cumulative + 100
        assert store.save_receipt("provider", receipt(higher, seq=999), now=999)
        assert store.latest_receipt("provider", receipt(1).job_id) == receipt(higher, seq=999)


def test_read_only_filesystem_is_named(small_disk: Path) -> None:
    path = small_disk / "node.sqlite"
    with NodeStore.open(path) as store:
        store.save_receipt("provider", receipt(100), now=1)
    # remounted while nothing holds it open (a busy mount cannot be), as after a reboot
    # that brought the disk back read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(StoreReadOnly, match="read-only") as caught:
            NodeStore.open(path)
        assert str(small_disk) in str(caught.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    with NodeStore.open(path) as store:
        assert store.latest_receipt("provider", receipt(1).job_id) == receipt(100)


def test_lock_held_by_another_process_is_named(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    with NodeStore.open(path, busy_timeout_s=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreLocked, match="locked by another process"):
                store.save_receipt("provider", receipt(100), now=1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.save_receipt("provider", receipt(100), now=1)


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    path.write_bytes(b"this is not a database " * 200)
    with pytest.raises(StoreCorrupt, match="damaged or not a database"):
        NodeStore.open(path)
