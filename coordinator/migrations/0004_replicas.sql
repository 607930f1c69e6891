-- What several coordinator replicas on one database share beyond the data itself.

-- Signed requests seen within the auth window: a signature is accepted once, by whichever
-- replica sees it first (the insert that conflicts is the replay).
CREATE TABLE seen_signatures (
    signature BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX seen_signatures_expiry ON seen_signatures (expires_at);

-- Token buckets shared by the replicas (scope: "signer" or "client address"). Tokens and
-- times are rate-limit bookkeeping, not money: REAL is fine here.
CREATE TABLE rate_buckets (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens REAL NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_buckets_at ON rate_buckets (at);

-- Leases: the replica named by `holder` does the job `name` (the settlement rounds) until
-- `expires_at`, on the database's own clock, unless it renews first.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    acquired_at REAL NOT NULL
);
