"""Offer index: the latest version of each signed offer, searchable while it is live."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
from dgpu.coordinator.db import Connection, Database, Row
from dgpu.coordinator.errors import ApiError
from dgpu.coordinator.store.verdicts import VERIFIED_SINCE
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import Offer

if TYPE_CHECKING:
    from dgpu.coordinator.store.admission import OfferAdmission

IngestStatus = Literal["created", "refreshed", "duplicate", "stale"]
SortKey = Literal["rank", "price", "-price", "score", "vram", "count", "newest"]
SORTS: Final[dict[str, str]] = {
    "rank": "o.provider_proven DESC, o.price_per_gpu_second ASC, o.rowid ASC",
    "price": "o.price_per_gpu_second ASC, o.rowid ASC",
    "-price": "o.price_per_gpu_second DESC, o.rowid DESC",
    "score": "o.provider_score DESC, o.price_per_gpu_second ASC, o.rowid ASC",
    "vram": "o.vram_mb DESC, o.price_per_gpu_second ASC, o.rowid ASC",
    "count": "o.gpu_count DESC, o.price_per_gpu_second ASC, o.rowid ASC",
    "newest": "o.created_at DESC, o.rowid DESC",
}
"""Every order ends in the rowid, so pages are stable and price/age orders follow an index.
``rank`` (the default) is price order with proven providers first: a flood of new keys at
price 1 cannot push a provider that has completed jobs off the first page."""
DEFAULT_SORT: Final = "rank"


@dataclass(frozen=True)
class OfferQuery:
    """Search filters; ``None`` means "any". ``model_key`` is a normalised model name."""

    model_key: str | None = None
    count: int | None = None
    min_vram_mb: int | None = None
    max_price: int | None = None
    region: str | None = None
    min_score_bps: int | None = None
    """Provider score at least this, in basis points of 1.0."""
    simulated: bool | None = None
    provider: str | None = None
    sort: str = DEFAULT_SORT
    limit: int = 50
    offset: int = 0
    current_only: bool = False
    """Only each provider's current offer (see CURRENT): what the explorer shows."""
    admitted_only: bool = True
    """Only offers whose provider passed admission (reached and proved its key)."""
    verified_since: int | None = None
    """Only providers with a ``verified`` probe verdict since then (see VERIFIED_SINCE)."""

    def where(self, now: int, *, for_count: bool = False) -> tuple[str, list[Any]]:
        """The WHERE clause and its parameters. For a page, the expiry test is written
        ``+o.expires_at`` so the planner walks a sort-order index to the LIMIT instead of
        collecting every live offer through the expiry index and sorting them."""
        clauses = ["o.expires_at > ?" if for_count else "+o.expires_at > ?"]
        params: list[Any] = [now]
        if self.admitted_only:
            # ``+``: never the index a page walks (sqlite took offers_pending for unfiltered
            # searches and sorted all 10,000 live offers, ~25 ms); the count's covering
            # index holds the flag
            clauses.append("+o.admitted = 1")
        for column, op, value in (
            ("o.model_key", "=", self.model_key),
            ("o.gpu_count", ">=", self.count),
            ("o.vram_mb", ">=", self.min_vram_mb),
            ("o.price_per_gpu_second", "<=", self.max_price),
            ("o.region", "=", self.region),
            ("o.provider_score", ">=", self.min_score_bps),
            ("o.provider", "=", self.provider),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        if self.simulated is not None:
            clauses.append("o.simulated = ?")
            params.append(int(self.simulated))
        if self.current_only:
            clauses.append(CURRENT)
            params.append(now)
        if self.verified_since is not None:
            clauses.append(VERIFIED_SINCE)
            params.append(self.verified_since)
        return " AND ".join(clauses), params


# A provider advertises one offer at a time (the node re-signs it with a new offer_id when its
# capacity changes), but the offer it replaced stays signed and live until it expires. Its
# *current* offer is its newest one (latest created_at; ties: the later stored); older ones
# are superseded and must not be counted twice as supply, nor come back when the newest
# expires first. ``superseded`` is kept by OfferRepo.ingest (a flag, not a NOT EXISTS
# subquery per row: that cost a look-up per candidate). The clause takes the same ``now``
# as the expiry test (a current offer is a live one), so callers pass it twice; it is
# written ``+o.expires_at`` so that it never steers a page onto the expiry index.
CURRENT: Final = "o.superseded = 0 AND +o.expires_at > ?"

_SELECT = (
    "SELECT o.offer_id, o.provider, o.gpu_model, o.model_key, o.gpu_count, o.vram_mb,"
    " o.power_w, o.simulated, o.price_per_gpu_second, o.mint, o.region, o.max_duration_s,"
    " o.multiaddrs, o.created_at, o.expires_at, o.source, o.received_at, o.raw,"
    " o.provider_score AS score, o.provider_proven, o.admitted FROM offers o"
)


def offer_json(row: Row) -> dict[str, Any]:
    """The API form of an offer row (ids in hex, keys in base58, amounts as integers);
    ``raw`` is the signed canonical MessagePack, for clients to verify the offer themselves."""
    return {
        "offer_id": bytes(row["offer_id"]).hex(),
        "provider": row["provider"],
        "gpu_model": row["gpu_model"],
        "model_key": row["model_key"],
        "gpu_count": row["gpu_count"],
        "vram_mb": row["vram_mb"],
        "power_w": row["power_w"],
        "simulated": bool(row["simulated"]),
        "price_per_gpu_second": row["price_per_gpu_second"],
        "mint": row["mint"],
        "region": row["region"],
        "max_duration_s": row["max_duration_s"],
        "multiaddrs": json.loads(row["multiaddrs"]),
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "source": row["source"],
        "provider_score": row["score"] / 10_000,
        "provider_proven": bool(row["provider_proven"]),
        "admitted": bool(row["admitted"]),
        **device_json(bytes(row["raw"])),
        "raw": base64.b64encode(bytes(row["raw"])).decode(),
    }


DEVICE_FIELDS: Final = ("gpu_vendor", "gpu_name", "driver_version", "gpu_uuids", "executor")


def device_json(raw: bytes) -> dict[str, Any]:
    """What the provider's GPU backend read, from the signed offer (validated at ingest;
    these fields have no columns of their own: nothing searches them here)."""
    fields = msgspec.msgpack.decode(raw)
    defaults: dict[str, Any] = {
        "gpu_vendor": "unknown", "gpu_name": "", "driver_version": "", "gpu_uuids": [],
        "executor": "docker",
    }  # fmt: skip
    if not isinstance(fields, dict):
        return defaults
    return {name: fields.get(name, defaults[name]) for name in DEVICE_FIELDS}


class OfferRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ingest(
        self,
        offer: Offer,
        raw: bytes,
        *,
        model_key: str,
        source: str,
        now: int,
        admission: OfferAdmission | None = None,
    ) -> IngestStatus:
        """Store ``offer`` (already verified) unless a same-or-newer version is known.
        With ``admission``, its limits are checked first (refusals raise
        :class:`~dgpu.coordinator.errors.ApiError`) and the offer is stored admitted or
        pending as its provider's last probe says."""
        provider = address_of(offer.provider)
        admitted = 1
        async with self._db.transaction() as conn:
            # One provider's offers are ingested one at a time across replicas: the look-up
            # below and the presence interval are read-then-write.
            await conn.lock(f"offers:{provider}")
            if admission is not None:
                admitted = int(await admission.check(conn, offer, provider, now))
            known = await conn.fetchone(
                "SELECT provider, created_at, raw FROM offers WHERE offer_id = ?",
                (offer.offer_id,),
            )
            if known is not None:
                if known["provider"] != provider:
                    raise ApiError(409, "offer_conflict", "offer_id is taken by another provider")
                if bytes(known["raw"]) == raw:
                    return "duplicate"
                if offer.created_at <= known["created_at"]:
                    return "stale"
                await conn.execute("DELETE FROM offers WHERE offer_id = ?", (offer.offer_id,))
            await _extend_presence(conn, provider, now, offer.expires_at)
            await conn.execute(
                "INSERT INTO offers (offer_id, provider, gpu_model, model_key, gpu_count,"
                " vram_mb, power_w, simulated, price_per_gpu_second, mint, region,"
                " max_duration_s, multiaddrs, created_at, expires_at, source, received_at, raw,"
                " admitted, provider_score, provider_proven)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
                " coalesce((SELECT score FROM providers WHERE address = ?), 0),"
                " coalesce((SELECT proven FROM providers WHERE address = ?), 0))",
                (
                    offer.offer_id,
                    provider,
                    offer.gpu_model,
                    model_key,
                    offer.gpu_count,
                    offer.vram_mb,
                    offer.power_w,
                    int(offer.simulated),
                    offer.price_per_gpu_second,
                    address_of(offer.mint),
                    offer.region,
                    offer.max_duration_s,
                    json.dumps(list(offer.multiaddrs)),
                    offer.created_at,
                    offer.expires_at,
                    source,
                    now,
                    raw,
                    admitted,
                    provider,
                    provider,
                ),
            )
            await _supersede(conn, provider)
            return "created" if known is None else "refreshed"

    async def search(self, query: OfferQuery, now: int) -> tuple[int, list[Row]]:
        where, params = query.where(now)
        count_where, _ = query.where(now, for_count=True)
        order = SORTS.get(query.sort, SORTS["price"])
        # where/order are built from constant fragments; values go through placeholders
        hint = self._db.dialect.indexed_by("offers_count")
        count_sql = f"SELECT count(*) FROM offers o {hint} WHERE {count_where}"  # noqa: S608
        total = await self._db.scalar(count_sql, params)
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, query.limit, query.offset],
        )
        return int(total), list(rows)

    async def get(self, offer_id: bytes) -> Row | None:
        return await self._db.fetchone(f"{_SELECT} WHERE o.offer_id = ?", (offer_id,))

    async def count(self) -> int:
        return int(await self._db.scalar("SELECT count(*) FROM offers"))

    async def live_rows(self, now: int) -> list[Row]:
        """Every provider's current admitted offer (model, count, price, provider): input of
        reference prices (neither a superseded offer nor one waiting for its probe is
        supply)."""
        rows = await self._db.fetchall(
            "SELECT o.model_key, o.gpu_model, o.gpu_count, o.price_per_gpu_second,"  # noqa: S608 (constant CURRENT)
            " o.provider, o.simulated, o.vram_mb FROM offers o"
            f" WHERE o.expires_at > ? AND o.admitted = 1 AND {CURRENT}",
            (now, now),
        )
        return list(rows)

    async def live_summary(self, now: int) -> dict[str, int]:
        """Current offers, their GPUs and their providers (superseded offers not counted)."""
        row = await self._db.fetchone(
            "SELECT count(*) AS offers, coalesce(sum(gpu_count), 0) AS gpus,"  # noqa: S608 (constant CURRENT)
            " count(DISTINCT provider) AS providers FROM offers o"
            f" WHERE o.expires_at > ? AND o.admitted = 1 AND {CURRENT}",
            (now, now),
        )
        assert row is not None
        return {"offers": row["offers"], "gpus": row["gpus"], "providers": row["providers"]}

    async def gpus_by_model(self, now: int) -> list[Row]:
        rows = await self._db.fetchall(
            "SELECT model_key, sum(gpu_count) AS gpus, count(*) AS offers,"  # noqa: S608 (constant CURRENT)
            " sum(simulated * gpu_count) AS simulated_gpus, min(price_per_gpu_second) AS cheapest"
            f" FROM offers o WHERE o.expires_at > ? AND o.admitted = 1 AND {CURRENT}"
            " GROUP BY model_key ORDER BY gpus DESC, model_key",
            (now, now),
        )
        return list(rows)

    async def distinct(self, column: Literal["model_key", "region"], now: int) -> list[str]:
        rows = await self._db.fetchall(
            f"SELECT DISTINCT {column} FROM offers"  # noqa: S608 (column is a Literal)
            " WHERE expires_at > ? AND admitted = 1 ORDER BY 1",
            (now,),
        )
        return [row[0] for row in rows]

    async def prune(self, before: int) -> int:
        """Drop offers expired before ``before`` (kept a while for the explorer)."""
        return await self._db.execute("DELETE FROM offers WHERE expires_at < ?", (before,))


async def _supersede(conn: Connection, provider: str) -> None:
    """Flag every offer of ``provider`` but its newest as superseded (at most two rows
    change: the previous current offer and the one just stored)."""
    newest = await conn.fetchone(
        "SELECT offer_id FROM offers WHERE provider = ? ORDER BY created_at DESC, rowid DESC"
        " LIMIT 1",
        (provider,),
    )
    if newest is None:
        return
    await conn.execute(
        "UPDATE offers SET superseded = CASE WHEN offer_id = ? THEN 0 ELSE 1 END"
        " WHERE provider = ? AND (superseded = 0 OR offer_id = ?)",
        (newest["offer_id"], provider, newest["offer_id"]),
    )


async def _extend_presence(conn: Connection, provider: str, start: int, end: int) -> None:
    """Record that ``provider`` is available over ``[start, end)``, merging with its latest
    interval when they touch. Times are the coordinator's (start is when it heard).
    (``"end"`` is quoted: a reserved word in PostgreSQL.)"""
    if end <= start:
        return
    last = await conn.fetchone(
        'SELECT start, "end" FROM presence WHERE provider = ? ORDER BY start DESC LIMIT 1',
        (provider,),
    )
    if last is not None and last["start"] <= start <= last["end"]:
        if end > last["end"]:
            await conn.execute(
                'UPDATE presence SET "end" = ? WHERE provider = ? AND start = ?',
                (end, provider, last["start"]),
            )
    else:
        await conn.execute(
            'INSERT INTO presence (provider, start, "end") VALUES (?, ?, ?)'
            ' ON CONFLICT (provider, start) DO UPDATE SET "end" = excluded."end"',
            (provider, start, end),
        )
    await conn.execute(
        "INSERT INTO providers (address, first_seen, last_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen",
        (provider, start, start),
    )


async def live_candidates(db: Database, now: int) -> list[Row]:
    """Every provider's current offer with its score (input of the "why no match" helper)."""
    rows = await db.fetchall(
        "SELECT o.model_key, o.gpu_count, o.vram_mb, o.price_per_gpu_second, o.region,"  # noqa: S608 (constant CURRENT)
        " o.simulated, o.provider_score AS score FROM offers o"
        f" WHERE o.expires_at > ? AND o.admitted = 1 AND {CURRENT}",
        (now, now),
    )
    return list(rows)
