-- 004: webhooks. Tampuuri's event deliveries, recorded before they are answered.

-- One row per notification received. A redelivered notification (same content) is recorded
-- once: event_key is a hash of the notification object.
CREATE TABLE webhook_events (
    id             INTEGER PRIMARY KEY,
    event_key      INTEGER NOT NULL UNIQUE,
    received_at    TEXT    NOT NULL,
    account        TEXT,                      -- Account
    action         TEXT,                      -- Action, e.g. IlmoitusUusi, IlmoitusTilamuutos
    reference_id   INTEGER,                   -- ReferenceId: the ticket
    reference_json TEXT,                      -- ReferenceJson as received (may tell the assignee and state)
    event_time     TEXT,                      -- Timestamp as received
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'fetched', 'skipped', 'ignored')),
    reason         TEXT,                      -- why skipped or ignored
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    processed_at   TEXT
);
CREATE INDEX webhook_events_pending ON webhook_events (account, reference_id, id) WHERE status = 'pending';
CREATE INDEX webhook_events_received ON webhook_events (received_at);

-- Counters that are not rows: deliveries received and rejected, tickets fetched.
CREATE TABLE webhook_counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- What started a sync run: a scheduled 'poll', or a 'reconcile' sweep when webhooks are on.
ALTER TABLE sync_runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'poll';
