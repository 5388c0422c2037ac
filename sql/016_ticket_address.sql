-- 016: the ticket's address as a column, so that no face reads Tampuuri's raw JSON. The sync
-- fills it from then on (parsed in the Tampuuri module); this fills it for the tickets already
-- stored, from the raw JSON's top-level `Kohde` (text as it is, an object as its JSON text).
ALTER TABLE tickets ADD COLUMN address TEXT;
UPDATE tickets SET address = CASE json_type(raw_json, '$.Kohde')
        WHEN 'text' THEN json_extract(raw_json, '$.Kohde')
        WHEN 'object' THEN json_extract(raw_json, '$.Kohde') END
 WHERE json_valid(raw_json);

-- The board's order over the open set (urgent first, then the latest completion time when
-- there is one, then the oldest reported first): an index the board's page walks in order, so
-- a page of 100 out of 100 000 open tickets reads about 100 rows.
CREATE INDEX tickets_board_order ON tickets (
    open,
    (urgency = 'Kiireellinen') DESC,
    (latest IS NULL),
    julianday(latest),
    julianday(coalesce(remote_created, first_seen)),
    account,
    id
);

-- The urgencies of the open set, for the board's filter, read from this index alone.
CREATE INDEX tickets_open_urgency ON tickets (open, urgency);

-- As 014 made it, with the address.
DROP VIEW open_tickets;
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
         ORDER BY v.start_at LIMIT 1) AS next_visit_start,
       t.address
FROM tickets t
WHERE t.open = 1;
