-- 017: a delivered action is in the mirror at once; a dead-lettered one is not pending.
--
-- When Tampuuri confirms an action, the transaction that marks the outbox row delivered also
-- writes its result into the mirror: the ticket's new state (or, for a create, the new ticket
-- from what was sent), with a history row naming the action. The next poll confirms that
-- result without a second history row, or records a later change by someone else as its own.

-- The action whose delivery a history row records (NULL: a row written from what Tampuuri
-- sent). Its kind, what was sent and who asked are the outbox row's.
ALTER TABLE ticket_changes ADD COLUMN outbox_id INTEGER;

-- The delivered action whose result the row shows and Tampuuri has not yet confirmed (the
-- ticket's `state` is ours, its `raw_json` is still what Tampuuri last sent); cleared when
-- Tampuuri's copy of the ticket is next written.
ALTER TABLE tickets ADD COLUMN delivered_outbox_id INTEGER;

-- ticket.changed names the action when the change was one of ours, delivered.
DROP TRIGGER feed_ticket_changed;
CREATE TRIGGER feed_ticket_changed AFTER INSERT ON ticket_changes
WHEN NEW.kind IN ('changed', 'returned')
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CASE NEW.kind WHEN 'changed' THEN 'ticket.changed' ELSE 'ticket.returned' END,
            NEW.account, NEW.ticket_id,
            CASE WHEN NEW.outbox_id IS NULL
                 THEN json_object('fields', json(coalesce(NEW.fields, '[]')),
                                  'old_state', NEW.old_state, 'state', NEW.new_state)
                 ELSE json_object('fields', json(coalesce(NEW.fields, '[]')),
                                  'old_state', NEW.old_state, 'state', NEW.new_state,
                                  'action_id', NEW.outbox_id)
            END);
END;

-- As 014 made it, except that `pending_state` and `pending_actions` count only pending actions
-- (a dead-lettered one waits for a dispatcher, not for delivery): `failed_actions` counts those.
DROP VIEW open_tickets;
CREATE VIEW open_tickets AS
SELECT t.account, t.id, t.state, t.title, t.description, t.extra_info, t.assignee_id, t.cost_centre_id,
       t.space_id, t.room_id, t.parent_id, t.urgency, t.access, t.fault_class, t.earliest, t.latest,
       t.reporter_name, t.reporter_phone, t.reporter_email, t.remote_created, t.remote_modified,
       t.first_seen, t.last_changed, t.raw_json,
       (SELECT o.expected_state FROM outbox o
         WHERE o.account = t.account AND o.ticket_id = t.id AND o.status = 'pending'
         ORDER BY o.id DESC LIMIT 1) AS pending_state,
       (SELECT count(*) FROM outbox o
         WHERE o.account = t.account AND o.queue_ticket = t.id AND o.status = 'pending') AS pending_actions,
       (SELECT v.start_at FROM visits v
         WHERE v.account = t.account AND v.ticket_id = t.id AND v.status <> 'cancelled'
           AND v.end_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         ORDER BY v.start_at LIMIT 1) AS next_visit_start,
       (SELECT count(*) FROM outbox o
         WHERE o.account = t.account AND o.queue_ticket = t.id AND o.status = 'dead') AS failed_actions,
       t.address
FROM tickets t
WHERE t.open = 1;
