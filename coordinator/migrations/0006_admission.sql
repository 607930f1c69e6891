-- Admission of offers: what stops a flood of fake providers (issue 12, attack 6).

-- 1 when the offer may be served in searches. With a prober (`dgpu coordinator serve`
-- without --no-probe) an offer is stored at 0 and served only once the coordinator has
-- reached its provider over libp2p at the offer's addresses and the provider proved its key
-- there (the Noise handshake). Without a prober every offer is admitted at once.
ALTER TABLE offers ADD COLUMN admitted INTEGER NOT NULL DEFAULT 1;
-- Copied from providers.proven (kept in step by ProviderRepo.save_score), like the score:
-- searches put offers of proven providers first without a join.
ALTER TABLE offers ADD COLUMN provider_proven INTEGER NOT NULL DEFAULT 0;
-- 1 once the provider has completed a job (coordinator/scores.py: no history is not a good
-- history).
ALTER TABLE providers ADD COLUMN proven INTEGER NOT NULL DEFAULT 0;
CREATE INDEX offers_ranked ON offers (provider_proven DESC, price_per_gpu_second);
CREATE INDEX offers_pending ON offers (admitted, expires_at);

-- The last reachability probe of each provider key, shared by the replicas: an offer of a
-- provider whose probe passed and is still valid is admitted without another dial.
CREATE TABLE reachability (
    provider TEXT PRIMARY KEY,
    reachable INTEGER NOT NULL,
    detail TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    valid_until INTEGER NOT NULL
);

-- The client address each provider key was first posted from: new keys per address per hour
-- are limited (keys posted through a trusted relay are not counted here).
CREATE TABLE key_admissions (
    provider TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX key_admissions_ip ON key_admissions (ip, at);
