-- 014: Slotti reconciliations (the last ones, for `status`) and the counters of Slotti's
-- webhook deliveries (in webhook_counters: slotti_deliveries_received, slotti_duplicates,
-- slotti_refused).

-- One row per reconciliation of `GET bookings` against the visits; the newest 100 are kept.
CREATE TABLE slotti_reconciles (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    error       TEXT,                                -- why it failed (ok = 0)
    span_from   TEXT,                                -- the span of bookings asked for (UTC)
    span_to     TEXT,
    listed      INTEGER NOT NULL DEFAULT 0,          -- bookings Slotti listed over the span
    ours        INTEGER NOT NULL DEFAULT 0,          -- of them, carrying our marker
    moved       INTEGER NOT NULL DEFAULT 0,          -- moved changes recorded
    cancelled   INTEGER NOT NULL DEFAULT 0,          -- cancelled changes recorded
    recovered   INTEGER NOT NULL DEFAULT 0,          -- bookings of ours recorded as visits (a lost answer)
    calls       INTEGER NOT NULL DEFAULT 0           -- Slotti API calls it made
);
