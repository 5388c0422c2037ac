-- 014: visit bookings in the outbox, and visit changes that are not told.
--
-- A visit booking (`book`, delivered to Slotti by the relay) is an outbox action like the
-- others, so that it waits in its ticket's queue. The kind CHECK of 002 did not allow it, and
-- SQLite cannot change a CHECK in place: outbox is rebuilt with the same columns, indexes and
-- triggers. Its attachments are kept aside while it is (dropping outbox would cascade to them).
CREATE TEMP TABLE outbox_attachments_kept AS SELECT * FROM outbox_attachments;
DROP VIEW open_tickets;
DROP TRIGGER feed_action_queued;
DROP TRIGGER feed_action_status;
CREATE TABLE outbox_new (
    id                INTEGER PRIMARY KEY,
    account           TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('accept', 'hold', 'done', 'create', 'book')),
    ticket_id         INTEGER,                    -- the ticket acted on (NULL for a create)
    -- Actions with the same (account, queue_ticket) are delivered one at a time, in id order:
    -- a ticket's own actions (visit bookings included), and follow-up creates of that ticket
    -- as parent. NULL: a create without a parent, which waits for nothing.
    queue_ticket      INTEGER,
    payload           TEXT    NOT NULL,           -- the action as JSON (huoltosync's own format, not Tampuuri's or Slotti's)
    from_state        TEXT,                       -- the state it was queued from (mirrored or pending)
    expected_state    TEXT,                       -- the ticket's state once it took effect (a booking: unchanged)
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    -- 1 while a send may have reached Tampuuri (or Slotti) without us knowing: the next
    -- attempt first checks whether it took effect.
    in_doubt          INTEGER NOT NULL DEFAULT 0 CHECK (in_doubt IN (0, 1)),
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL,
    next_attempt_at   TEXT    NOT NULL,
    deadline_at       TEXT    NOT NULL,           -- transient failures are retried until then
    last_attempt_at   TEXT,
    last_error        TEXT,
    delivered_at      TEXT,
    outcome           TEXT,                       -- how it was delivered: 'sent', or 'already applied' after a check
    created_ticket_id INTEGER,                    -- a create: the new ticket's id
    marker            TEXT,                       -- a create or a booking: its correlation marker
    erased_at         TEXT,
    before_state      TEXT,                       -- the ticket's state before the send (a transition)
    before_modified   TEXT,                       -- its Muokattu then, as received; NULL when Tampuuri did not tell
    requested_by      TEXT
);
INSERT INTO outbox_new (id, account, kind, ticket_id, queue_ticket, payload, from_state, expected_state,
        status, in_doubt, attempts, created_at, next_attempt_at, deadline_at, last_attempt_at, last_error,
        delivered_at, outcome, created_ticket_id, marker, erased_at, before_state, before_modified, requested_by)
SELECT id, account, kind, ticket_id, queue_ticket, payload, from_state, expected_state,
        status, in_doubt, attempts, created_at, next_attempt_at, deadline_at, last_attempt_at, last_error,
        delivered_at, outcome, created_ticket_id, marker, erased_at, before_state, before_modified, requested_by
FROM outbox;
DROP TABLE outbox_attachments;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_queue ON outbox (account, queue_ticket, id) WHERE status IN ('pending', 'dead');
CREATE INDEX outbox_status ON outbox (status, next_attempt_at);
CREATE INDEX outbox_ticket ON outbox (account, ticket_id);
CREATE TABLE outbox_attachments (
    outbox_id    INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    file_name    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    description  TEXT,
    size         INTEGER NOT NULL,
    content      BLOB,                            -- NULL once delivered or cancelled
    PRIMARY KEY (outbox_id, seq)
);
INSERT INTO outbox_attachments SELECT * FROM outbox_attachments_kept;
DROP TABLE outbox_attachments_kept;

-- As 007 made them.
CREATE TRIGGER feed_action_queued AFTER INSERT ON outbox
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'action.queued', NEW.account, NEW.ticket_id,
            json_object('action_id', NEW.id, 'kind', NEW.kind));
END;
CREATE TRIGGER feed_action_status AFTER UPDATE OF status ON outbox
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CASE NEW.status WHEN 'delivered' THEN 'action.applied' WHEN 'dead' THEN 'action.dead'
                            WHEN 'cancelled' THEN 'action.cancelled' ELSE 'action.requeued' END,
            NEW.account, coalesce(NEW.ticket_id, NEW.created_ticket_id),
            json_object('action_id', NEW.id, 'kind', NEW.kind, 'outcome', NEW.outcome,
                        'error', CASE WHEN NEW.status = 'dead' THEN NEW.last_error END,
                        'created_ticket_id', NEW.created_ticket_id));
END;

-- As 011 made it.
CREATE VIEW open_tickets AS
SELECT t.account, t.id, t.state, t.title, t.description, t.extra_info, t.assignee_id, t.cost_centre_id,
       t.space_id, t.room_id, t.parent_id, t.urgency, t.access, t.fault_class, t.earliest, t.latest,
       t.reporter_name, t.reporter_phone, t.reporter_email, t.remote_created, t.remote_modified,
       t.first_seen, t.last_changed, t.raw_json,
       (SELECT o.expected_state FROM outbox o
         WHERE o.account = t.account AND o.ticket_id = t.id AND o.status IN ('pending', 'dead')
         ORDER BY o.id DESC LIMIT 1) AS pending_state,
       (SELECT count(*) FROM outbox o
         WHERE o.account = t.account AND o.queue_ticket = t.id AND o.status IN ('pending', 'dead')) AS pending_actions,
       (SELECT v.start_at FROM visits v
         WHERE v.account = t.account AND v.ticket_id = t.id AND v.status <> 'cancelled'
           AND v.end_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         ORDER BY v.start_at LIMIT 1) AS next_visit_start
FROM tickets t
WHERE t.open = 1;

-- A visit change that cannot be told to Tampuuri (the ticket left our open set, or is in a
-- state a hold cannot follow) is marked with why, instead of waiting to be told for ever. A
-- change is told (told_outbox_id) or not told (not_told), never both.
ALTER TABLE visit_changes ADD COLUMN not_told TEXT;
