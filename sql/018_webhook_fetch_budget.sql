-- 018: each fetch of a ticket the mirror does not hold, made for webhook events, is a row: those
-- of the last minute count against [webhook] max_fetches_per_minute. Rows older than a day are
-- deleted as new ones are written.
CREATE TABLE webhook_unheld_fetches (
    id         INTEGER PRIMARY KEY,
    account    TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
CREATE INDEX webhook_unheld_fetches_by_time ON webhook_unheld_fetches (account, fetched_at);
