"""Configuration of a coordinator: plain frozen data, built at the edge (the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dgpu.coordinator.db import describe


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


@dataclass(frozen=True)
class AdmissionLimits:
    """What an offer must pass to be indexed and served (see :mod:`dgpu.coordinator.admission`)."""

    live_offers_per_key: int = 8
    """Live offers one provider key may hold at once (a node advertises one at a time; the
    offers it replaced stay live until they expire)."""
    new_keys_per_ip_per_hour: int = 20
    """Provider keys first posted from one client address in an hour (direct posts only:
    a trusted relay does its own limiting)."""
    probe_ttl_s: int = 600
    """A passed probe admits the key's offers this long, then the provider is probed again."""
    failed_probe_retry_s: int = 60
    """A failed probe is retried after this many seconds (its offers wait meanwhile)."""
    probe_timeout_s: float = 10.0
    probe_concurrency: int = 16
    probe_every_s: float = 5.0
    """Due probes are looked for this often, and at once when a new offer arrives."""

    def __post_init__(self) -> None:
        if self.live_offers_per_key < 1 or self.new_keys_per_ip_per_hour < 1:
            raise ValueError("admission limits must be at least 1")


@dataclass(frozen=True)
class CoordinatorConfig:
    db_path: Path
    """The sqlite file (``:memory:`` is refused: the store must survive restarts); not used
    when ``database_url`` is set."""
    database_url: str | None = None
    """A PostgreSQL server (``postgresql://user:password@host:port/db``) shared by several
    replicas; when set, it holds the store instead of ``db_path``."""
    replica_id: str = ""
    """This replica's name in ``/healthz``, ``/metrics`` and the settler lease (empty:
    ``host:pid``). Two live replicas must not share one."""
    settler_lease_s: float = 15.0
    """Term of the settler lease: a dead settler's lease is taken over by another replica
    within this many seconds (plus one renewal interval, a third of it)."""
    trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies (addresses or CIDR networks) whose ``X-Forwarded-For`` is believed:
    per-client limits then count the client it names, not the proxy. Empty: the header is
    ignored (anyone could write it)."""
    auth_window_s: int = 60
    """Signed requests must be dated within this many seconds of the coordinator's clock."""
    max_body_bytes: int = 16 * 1024
    """Request bodies above this are refused with 413 before they are read in full."""
    body_timeout_s: float = 10.0
    """A request body must arrive whole within this many seconds (slow bodies get 408)."""
    per_key_limit: RateLimit = RateLimit(per_second=5.0, burst=50)
    """Signed writes per signer address."""
    per_ip_limit: RateLimit = RateLimit(per_second=50.0, burst=200)
    """API requests per client address."""
    admins: frozenset[str] = frozenset()
    """Addresses allowed to trigger a settlement round on demand."""
    relays: frozenset[str] = frozenset()
    """Addresses allowed to post offers signed by other providers (bootstrap relays)."""
    settle_every_s: float = 60.0
    """Interval of the settlement timer; 0 switches the timer off (on demand only)."""
    snapshot_every_s: float = 60.0
    """Interval of the reference price snapshots shown in the explorer's chart."""
    availability_window_s: int = 24 * 3600
    """Offer uptime is measured over this trailing window."""
    verified_window_s: int = 7 * 24 * 3600
    """A probe verdict is "recent" for this long: a ``verified`` one lets the provider's
    offers match ``verified=true`` searches (``dgpu run --verified``), and the latest
    verified or mismatch verdict in it weighs on the provider's score."""
    max_page: int = 200
    """Largest ``limit`` a search accepts."""
    mint: str | None = None
    """When set, offers for another mint are refused (base58 address)."""
    program_id: str | None = None
    """When set, receipts for another escrow program are refused (base58 address)."""
    verify_channels_on_intake: bool = True
    """With a chain, check a receipt's channel on chain when it first arrives."""
    admission: AdmissionLimits = AdmissionLimits()
    """Per-key and per-address offer limits; the reachability probe."""
    site_name: str = "dgpu explorer"
    explorer_refresh_s: float = 5.0
    """The overview page polls its live figures this often (0: never)."""

    @property
    def database(self) -> str | Path:
        """What the store opens: the PostgreSQL URL when set, else the sqlite file."""
        return self.database_url if self.database_url else self.db_path

    def describe_database(self) -> str:
        """The database for logs and messages (no password)."""
        return describe(self.database)
