-- 003: retention. When personal data was erased from a ticket or an outbox action.
ALTER TABLE tickets ADD COLUMN personal_erased_at TEXT;
ALTER TABLE outbox ADD COLUMN erased_at TEXT;
CREATE INDEX tickets_left ON tickets (left_at) WHERE open = 0;
