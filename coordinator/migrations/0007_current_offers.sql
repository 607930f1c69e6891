-- A provider's current offer, kept as a flag instead of found by a subquery per row: the
-- NOT EXISTS test ("no newer live offer of this provider") cost one look-up per candidate,
-- which turned a count over 10,000 live offers from ~1 ms into tens of ms. An offer is
-- superseded once an offer of its provider with a later created_at (ties: stored later)
-- is stored; OfferRepo.ingest keeps the flag in step under the provider's lock.
ALTER TABLE offers ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
UPDATE offers SET superseded = 1 WHERE EXISTS (
    SELECT 1 FROM offers n WHERE n.provider = offers.provider
    AND (n.created_at > offers.created_at
         OR (n.created_at = offers.created_at AND n.rowid > offers.rowid))
);
-- Counting matches still reads this covering index only (with the flags every search tests:
-- superseded, and admission's admitted from migration 6).
DROP INDEX offers_count;
CREATE INDEX offers_count ON offers (
    model_key, expires_at, price_per_gpu_second, gpu_count, vram_mb, region, provider_score,
    simulated, provider, superseded, admitted
);
-- Score and age orders under the filters most searches carry (a model, a region): the page
-- walks these to its LIMIT instead of sorting every match or walking offers_score past rows
-- of other models (at 10,000 offers: a score page of one model took ~2 ms sorting ~1,700 rows).
-- dialect: sqlite
CREATE INDEX offers_model_score ON offers (model_key, provider_score DESC, price_per_gpu_second);
CREATE INDEX offers_model_created ON offers (model_key, created_at);
CREATE INDEX offers_region_score ON offers (region, provider_score DESC, price_per_gpu_second);
CREATE INDEX offers_region_created ON offers (region, created_at);
-- dialect: postgresql
-- Every search order ends in the rowid (stable pages). sqlite keeps the rowid in every index,
-- so an index on the sort columns yields that order as is; PostgreSQL's rowid is a plain
-- column, and without it in the index the planner sorts each group of equal keys: offers
-- signed in the same second (a restart re-advertising a fleet) made one group of 10,000
-- and an age-ordered page took ~30 ms instead of ~0.2 ms. The sort indexes end in rowid.
DROP INDEX offers_price;
CREATE INDEX offers_price ON offers (price_per_gpu_second, rowid);
DROP INDEX offers_created;
CREATE INDEX offers_created ON offers (created_at, rowid);
DROP INDEX offers_score;
CREATE INDEX offers_score ON offers (provider_score DESC, price_per_gpu_second, rowid);
DROP INDEX offers_model_price;
CREATE INDEX offers_model_price ON offers (model_key, price_per_gpu_second, rowid);
DROP INDEX offers_region;
CREATE INDEX offers_region ON offers (region, price_per_gpu_second, rowid);
DROP INDEX offers_ranked;
CREATE INDEX offers_ranked ON offers (provider_proven DESC, price_per_gpu_second, rowid);
CREATE INDEX offers_model_score ON offers (
    model_key, provider_score DESC, price_per_gpu_second, rowid
);
CREATE INDEX offers_model_created ON offers (model_key, created_at, rowid);
CREATE INDEX offers_region_score ON offers (
    region, provider_score DESC, price_per_gpu_second, rowid
);
CREATE INDEX offers_region_created ON offers (region, created_at, rowid);
-- A search counts its matches; PostgreSQL answers that from offers_count alone (an index-only
-- scan) only for pages its visibility map marks all-visible, which autovacuum maintains. At
-- the default thresholds (20 % of the table changed) a busy offer book stays mostly unmarked
-- and every count visits the table: ~5 ms instead of ~0.5 ms over 10,000 offers.
ALTER TABLE offers SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
