-- 008: a parked webhook event (its fetch failed on every retry) is settled by the next
-- successful sync of its account, which covers its ticket: status 'reconciled'. SQLite cannot
-- widen a CHECK in place, so webhook_events is rebuilt as in 006.
CREATE TABLE webhook_events_new (
    id             INTEGER PRIMARY KEY,
    event_key      INTEGER NOT NULL UNIQUE,
    received_at    TEXT    NOT NULL,
    account        TEXT,
    action         TEXT,
    reference_id   INTEGER,
    reference_json TEXT,
    event_time     TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'fetched', 'skipped', 'ignored', 'parked', 'reconciled')),
    reason         TEXT,                      -- why skipped, ignored, parked or reconciled
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    processed_at   TEXT,
    next_try_at    TEXT                       -- a pending event that failed: not fetched before this
);
INSERT INTO webhook_events_new (id, event_key, received_at, account, action, reference_id, reference_json,
                                event_time, status, reason, attempts, last_error, processed_at, next_try_at)
    SELECT id, event_key, received_at, account, action, reference_id, reference_json,
           event_time, status, reason, attempts, last_error, processed_at, next_try_at
    FROM webhook_events;
DROP TABLE webhook_events;
ALTER TABLE webhook_events_new RENAME TO webhook_events;
CREATE INDEX webhook_events_pending ON webhook_events (account, reference_id, id) WHERE status = 'pending';
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX webhook_events_parked ON webhook_events (account) WHERE status = 'parked';
