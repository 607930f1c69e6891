-- Offers: the latest version of each offer_id (a refresh replaces it).
CREATE TABLE offers (
    offer_id BLOB PRIMARY KEY,
    provider TEXT NOT NULL,
    gpu_model TEXT NOT NULL,
    model_key TEXT NOT NULL,
    gpu_count INTEGER NOT NULL,
    vram_mb INTEGER NOT NULL,
    power_w INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    price_per_gpu_second INTEGER NOT NULL,
    mint TEXT NOT NULL,
    region TEXT NOT NULL,
    max_duration_s INTEGER NOT NULL,
    multiaddrs TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    raw BLOB NOT NULL
);
-- dialect: postgresql
-- sqlite gives every row a rowid, the tie-breaker of the search orders; PostgreSQL has none.
ALTER TABLE offers ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY;
-- dialect: all
CREATE INDEX offers_expiry ON offers (expires_at);
CREATE INDEX offers_model_price ON offers (model_key, price_per_gpu_second);
CREATE INDEX offers_price ON offers (price_per_gpu_second);
CREATE INDEX offers_provider ON offers (provider, expires_at);

-- Providers seen through offers or receipts; score columns are a cache of scores.py, in
-- basis points (integers: no REAL column, so no SQLite floating point in comparisons).
CREATE TABLE providers (
    address TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    score INTEGER NOT NULL DEFAULT 0,
    reliability INTEGER NOT NULL DEFAULT 0,
    availability INTEGER NOT NULL DEFAULT 0,
    volume INTEGER NOT NULL DEFAULT 0,
    price_performance INTEGER NOT NULL DEFAULT 0,
    scored_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX providers_score ON providers (score);

-- Offer uptime: merged intervals [start, end) covered by the provider's offers.
CREATE TABLE presence (
    provider TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    PRIMARY KEY (provider, start)
);

-- Payment channels, with the highest receipt seen for each opening.
CREATE TABLE channels (
    channel TEXT NOT NULL,
    open_nonce INTEGER NOT NULL,
    program_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    renter TEXT NOT NULL,
    job_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    cumulative INTEGER NOT NULL,
    renter_sig BLOB NOT NULL,
    raw BLOB NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'open',
    note TEXT NOT NULL DEFAULT '',
    receipts INTEGER NOT NULL DEFAULT 1,
    first_seen INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (channel, open_nonce)
);
CREATE INDEX channels_provider ON channels (provider);
CREATE INDEX channels_job ON channels (job_id);

-- Job outcomes reported by renters and providers (reliability).
CREATE TABLE job_reports (
    job_id BLOB NOT NULL,
    reporter TEXT NOT NULL,
    provider TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (job_id, reporter)
);
CREATE INDEX job_reports_provider ON job_reports (provider);

-- Settlement batches: written before submission, so a crash leaves a trace to reconcile.
CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    finished_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batches_state ON batches (state);

CREATE TABLE batch_items (
    batch_id INTEGER NOT NULL REFERENCES batches (id),
    channel TEXT NOT NULL,
    open_nonce INTEGER NOT NULL,
    provider TEXT NOT NULL,
    cumulative INTEGER NOT NULL,
    settled_before INTEGER NOT NULL,
    settled_after INTEGER,
    PRIMARY KEY (batch_id, channel, open_nonce)
);
CREATE INDEX batch_items_provider ON batch_items (provider);

-- Reference prices over time, for the explorer's chart.
CREATE TABLE price_snapshots (
    at INTEGER NOT NULL,
    model TEXT NOT NULL,
    reference INTEGER NOT NULL,
    multiplier_bps INTEGER NOT NULL,
    median INTEGER,
    p10 INTEGER,
    p90 INTEGER,
    gpus INTEGER NOT NULL,
    PRIMARY KEY (at, model)
);
