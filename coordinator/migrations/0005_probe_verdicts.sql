-- Probe verdicts (issue 20): what a renter's paid probe job found about a provider's offer,
-- stored with the renter's signature (`raw`, the canonical ProbeVerdict). One verdict per
-- probe job. `at` is the coordinator's clock when the verdict arrived (what "recent" is
-- measured on: a back-dated signature gains nothing); `signed_at` is the renter's.
CREATE TABLE probe_verdicts (
    job_id BLOB PRIMARY KEY,
    provider TEXT NOT NULL,
    renter TEXT NOT NULL,
    offer_id BLOB NOT NULL,
    gpu_model TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('verified', 'mismatch', 'simulated', 'inconclusive')),
    reasons TEXT NOT NULL,
    measured_gflops INTEGER NOT NULL,
    signed_at INTEGER NOT NULL,
    at INTEGER NOT NULL,
    raw BLOB NOT NULL
);
-- The provider's latest verdicts (score, explorer, the `verified` search filter) and each
-- offer's (explorer).
CREATE INDEX probe_verdicts_provider ON probe_verdicts (provider, at);
CREATE INDEX probe_verdicts_offer ON probe_verdicts (offer_id, at);
