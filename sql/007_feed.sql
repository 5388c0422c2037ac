-- 007: the change feed. One row per event in commit order, for the HTTP API's `changes`
-- endpoint and for outgoing events to subscribers. The rows are written by triggers, in the
-- same transaction as the change they describe, so every writer (sweep, webhook, push, the
-- CLI) is covered and a rolled-back change leaves no event. `seq` is AUTOINCREMENT: it only
-- grows, is never reused after the purge drops old events, and (SQLite having one writer, the
-- sequence counter rolling back with its transaction) has no gaps between committed events.
CREATE TABLE feed (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT    NOT NULL,                   -- when the change was committed (UTC, RFC 3339)
    type      TEXT    NOT NULL,                   -- ticket.new, ticket.changed, ticket.returned, ticket.left,
                                                  -- action.queued, action.applied, action.dead,
                                                  -- action.cancelled, action.requeued
    account   TEXT    NOT NULL,
    ticket_id INTEGER,                            -- NULL for an action that creates a ticket
    data      TEXT    NOT NULL DEFAULT '{}'       -- JSON object: what the type needs (see sql/README.md)
);
CREATE INDEX feed_at ON feed (at);

-- A ticket seen for the first time.
CREATE TRIGGER feed_ticket_new AFTER INSERT ON tickets
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'ticket.new', NEW.account, NEW.id,
            json_object('state', NEW.state));
END;

-- A known ticket changed (with the Tampuuri fields that changed) or came back into the open set.
CREATE TRIGGER feed_ticket_changed AFTER INSERT ON ticket_changes
WHEN NEW.kind IN ('changed', 'returned')
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CASE NEW.kind WHEN 'changed' THEN 'ticket.changed' ELSE 'ticket.returned' END,
            NEW.account, NEW.ticket_id,
            json_object('fields', json(coalesce(NEW.fields, '[]')),
                        'old_state', NEW.old_state, 'state', NEW.new_state));
END;

-- A ticket left the open set, or why it is out changed (state, reassigned, deleted).
CREATE TRIGGER feed_ticket_left AFTER UPDATE OF left_reason ON tickets
WHEN NEW.left_reason IS NOT NULL AND NEW.left_reason IS NOT OLD.left_reason
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'ticket.left', NEW.account, NEW.id,
            json_object('reason', NEW.left_reason, 'state', NEW.state));
END;

-- An action queued in the outbox.
CREATE TRIGGER feed_action_queued AFTER INSERT ON outbox
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'action.queued', NEW.account, NEW.ticket_id,
            json_object('action_id', NEW.id, 'kind', NEW.kind));
END;

-- An action delivered, dead-lettered, cancelled, or queued again after a retry.
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
