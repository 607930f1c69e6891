-- Search pages follow an index to the LIMIT instead of sorting every live offer: price and
-- age orders end in the rowid, the tie-breaker of every sort. The provider's score is
-- copied onto its offers (kept in step by ProviderRepo.save_score) so that score filters
-- and the score order need no join.
DROP INDEX offers_price;
CREATE INDEX offers_price ON offers (price_per_gpu_second);
CREATE INDEX offers_created ON offers (created_at);
CREATE INDEX offers_region ON offers (region, price_per_gpu_second);
ALTER TABLE offers ADD COLUMN provider_score INTEGER NOT NULL DEFAULT 0;
CREATE INDEX offers_score ON offers (provider_score DESC, price_per_gpu_second);
-- Counting matches reads this covering index only (never the table rows).
CREATE INDEX offers_count ON offers (
    model_key, expires_at, price_per_gpu_second, gpu_count, vram_mb, region, provider_score,
    simulated, provider
);
