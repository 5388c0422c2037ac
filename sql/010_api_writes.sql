-- Writes through the HTTP API: who asked for each action, and the Idempotency-Key answers.

-- Who asked: the API token's name, "cli" for `huoltosync task`, "demo" for the demo. NULL for
-- actions queued before this migration.
ALTER TABLE outbox ADD COLUMN requested_by TEXT;

-- One row per (token name, Idempotency-Key) of a POST to the API: the hash of its method, path
-- and body, and the answer once there is one (status NULL while the first request runs).
-- Kept 24 h (the daily purge).
CREATE TABLE api_idempotency (
    token        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    body         TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (token, key)
) WITHOUT ROWID;
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);
