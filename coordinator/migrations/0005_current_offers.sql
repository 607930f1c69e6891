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
-- Counting matches still reads this covering index only.
DROP INDEX offers_count;
CREATE INDEX offers_count ON offers (
    model_key, expires_at, price_per_gpu_second, gpu_count, vram_mb, region, provider_score,
    simulated, provider, superseded
);
-- Score and age orders under the filters most searches carry (a model, a region): the page
-- walks these to its LIMIT instead of sorting every match or walking offers_score past rows
-- of other models (at 10,000 offers: a score page of one model took ~2 ms sorting ~1,700 rows).
CREATE INDEX offers_model_score ON offers (model_key, provider_score DESC, price_per_gpu_second);
CREATE INDEX offers_model_created ON offers (model_key, created_at);
CREATE INDEX offers_region_score ON offers (region, provider_score DESC, price_per_gpu_second);
CREATE INDEX offers_region_created ON offers (region, created_at);
