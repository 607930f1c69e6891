"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries (installed by
``scripts/system-deps.sh``), ``initdb`` + ``pg_ctl`` in a temporary directory, TCP on a free
loopback port, trust authentication. No mock: the coordinator talks to a real server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("DGPU_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.port = _free_port()
        self.log = root / "postgres.log"
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        self.root = root

    def _run(self, *args: str) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            # a test cluster: durability is not the point, and the box is small
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            conf.write("shared_buffers = 32MB\nmax_connections = 200\n")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -h 127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, url: str, sql: str) -> list[str]:
        """Run ``sql`` with psql on the database of ``url``; the rows, ``|``-separated."""
        database = url.rsplit("/", 1)[-1]
        out = subprocess.run(
            [
                *(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port)),
                *("-U", "postgres", "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return [line for line in out.stdout.splitlines() if line]

    def new_database(self, prefix: str = "coord") -> str:
        """A fresh empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)


@contextmanager
def running_cluster(root: Path) -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL is not installed ({PG_BIN}/initdb missing): run scripts/system-deps.sh"
        )
    cluster = Cluster(root)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
