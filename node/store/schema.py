"""The node's sqlite schema and its migrations.

Each migration is one SQL script; ``PRAGMA user_version`` holds how many have run. A
migration runs inside one transaction together with the version bump, so a crash leaves
either the old or the new schema, never half of one. Never edit a released migration:
append a new one.

Tables::

    keys         the node's keys: address, peer ID, role, key file path
    jobs         one row per (job, role): terms (request, quote, agreement as canonical
                 msgpack), channel, container, state, times, outcome
    receipts     every renter-signed receipt held or signed (both roles)
    settlements  provider: per channel opening, the highest cumulative handed to a
                 settlement path and what the chain has paid
    channels     renter: channels it opened, and whether the remainder was reclaimed
    chain        the chain the records above came from: its genesis hash and the URL
                 it was first seen at (one row)
    peers        renter: what it saw of each provider it tried (jobs run, consecutive
                 failures, when it may try again): its own ranking and failure memory
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: first schema
    """
    CREATE TABLE keys (
        address     TEXT PRIMARY KEY,
        peer_id     TEXT NOT NULL,
        role        TEXT NOT NULL,
        path        TEXT NOT NULL DEFAULT '',
        first_seen  INTEGER NOT NULL,
        last_used   INTEGER NOT NULL
    );
    CREATE TABLE jobs (
        job_id              BLOB NOT NULL,
        role                TEXT NOT NULL CHECK (role IN ('provider', 'renter')),
        state               TEXT NOT NULL,
        counterparty        BLOB NOT NULL,
        request             BLOB,
        quote               BLOB,
        agreement           BLOB,
        channel             BLOB,
        open_nonce          INTEGER,
        deposit             INTEGER,
        channel_expires_at  INTEGER,
        container           TEXT NOT NULL DEFAULT '',
        gpus                TEXT NOT NULL DEFAULT '',
        created_at          INTEGER NOT NULL,
        started_at          INTEGER,
        ended_at            INTEGER,
        exit_code           INTEGER,
        stop_reason         TEXT NOT NULL DEFAULT '',
        detail              TEXT NOT NULL DEFAULT '',
        seconds_billed      INTEGER NOT NULL DEFAULT 0,
        updated_at          INTEGER NOT NULL,
        PRIMARY KEY (job_id, role)
    );
    CREATE INDEX jobs_by_state ON jobs (role, state);
    CREATE TABLE receipts (
        role        TEXT NOT NULL CHECK (role IN ('provider', 'renter')),
        job_id      BLOB NOT NULL,
        program_id  BLOB NOT NULL,
        channel     BLOB NOT NULL,
        open_nonce  INTEGER NOT NULL,
        renter      BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        cumulative  INTEGER NOT NULL,
        sig         BLOB NOT NULL,
        stored_at   INTEGER NOT NULL,
        PRIMARY KEY (role, channel, open_nonce, cumulative)
    );
    CREATE INDEX receipts_by_job ON receipts (role, job_id, cumulative);
    CREATE TABLE settlements (
        channel         BLOB NOT NULL,
        open_nonce      INTEGER NOT NULL,
        job_id          BLOB NOT NULL,
        cumulative      INTEGER NOT NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('handed_off', 'submitted', 'settled', 'failed')),
        via             TEXT NOT NULL DEFAULT '',
        signature       TEXT NOT NULL DEFAULT '',
        error           TEXT NOT NULL DEFAULT '',
        paid_on_chain   INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (channel, open_nonce)
    );
    CREATE TABLE channels (
        channel             BLOB PRIMARY KEY,
        job_id              BLOB NOT NULL,
        provider            BLOB NOT NULL,
        mint                BLOB NOT NULL,
        deposit             INTEGER NOT NULL,
        open_nonce          INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        open_signature      TEXT NOT NULL DEFAULT '',
        status              TEXT NOT NULL CHECK (status IN ('open', 'reclaimed', 'closed')),
        reclaim_signature   TEXT NOT NULL DEFAULT '',
        reclaimed           INTEGER NOT NULL DEFAULT 0,
        updated_at          INTEGER NOT NULL
    );
    """,
    # 2: the chain this store's channels and receipts are on
    """
    CREATE TABLE chain (
        one           INTEGER PRIMARY KEY CHECK (one = 1),
        genesis_hash  TEXT NOT NULL,
        rpc_url       TEXT NOT NULL DEFAULT '',
        recorded_at   INTEGER NOT NULL
    );
    """,
    # 3: the renter's memory of providers (issue 12, attack 6)
    """
    CREATE TABLE peers (
        provider        BLOB PRIMARY KEY,
        successes       INTEGER NOT NULL DEFAULT 0,
        failures        INTEGER NOT NULL DEFAULT 0,
        retry_after     INTEGER NOT NULL DEFAULT 0,
        last_success_at INTEGER NOT NULL DEFAULT 0,
        last_failure_at INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX peers_by_update ON peers (updated_at);
    """,
)
