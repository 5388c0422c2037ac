-- 011: technician visits booked in Slotti for tickets, their history, and Slotti's webhook
-- deliveries. Times are RFC 3339 text in UTC as huoltosync writes them
-- ("2026-04-07T06:00:00.000Z"), so they compare as text.

-- One row per booking huoltosync made in Slotti. A visit is never deleted (a purge erases its
-- customer data); a booking deleted in Slotti is `cancelled`.
CREATE TABLE visits (
    id                 INTEGER PRIMARY KEY,
    account            TEXT    NOT NULL,             -- the Tampuuri account of the ticket
    ticket_id          INTEGER NOT NULL,             -- the ticket the visit is for
    booking_guid       TEXT    NOT NULL UNIQUE,      -- Slotti's booking guid
    marker             TEXT    NOT NULL,             -- the [huoltosync:…] marker at the end of the booking's info
    technician_guid    TEXT,                         -- the Slotti resource (technician) booked
    technician_name    TEXT,
    service_guid       TEXT,                         -- the Slotti service booked
    service_name       TEXT,
    start_at           TEXT    NOT NULL,             -- when the visit starts (UTC), as Slotti last showed it
    end_at             TEXT    NOT NULL,             -- when it ends (UTC)
    status             TEXT    NOT NULL CHECK (status IN ('booked', 'moved', 'cancelled')),
    customer_name      TEXT,                         -- the resident booked for (personal data)
    customer_phone     TEXT,                         -- (personal data)
    customer_email     TEXT,                         -- (personal data)
    raw_json           TEXT    NOT NULL,             -- the booking as Slotti last showed it (its customer data is personal data)
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,             -- when a change was last recorded (or raw_json refreshed)
    personal_erased_at TEXT                          -- when a purge erased its customer data
);
-- One ticket never has two live bookings: a second one is refused by the store, and by SQLite.
CREATE UNIQUE INDEX visits_one_active ON visits (account, ticket_id) WHERE status <> 'cancelled';
CREATE INDEX visits_start ON visits (start_at);
CREATE INDEX visits_ticket ON visits (account, ticket_id);

-- History of each visit: booked, moved, cancelled. Each change is told to Tampuuri once:
-- told_outbox_id is the outbox row that tells it (NULL until that row is queued). It is not a
-- foreign key: the purge deletes old delivered outbox rows, and the change stays told.
CREATE TABLE visit_changes (
    seq            INTEGER PRIMARY KEY,
    visit_id       INTEGER NOT NULL REFERENCES visits (id),
    at             TEXT    NOT NULL,
    what           TEXT    NOT NULL CHECK (what IN ('booked', 'moved', 'cancelled')),
    old_start      TEXT,                             -- before the change (NULL for booked)
    old_end        TEXT,
    new_start      TEXT,                             -- after it (NULL for cancelled)
    new_end        TEXT,
    source         TEXT    NOT NULL CHECK (source IN ('booking', 'webhook', 'reconcile')),
    told_outbox_id INTEGER,
    told_at        TEXT
);
CREATE INDEX visit_changes_visit ON visit_changes (visit_id);
CREATE INDEX visit_changes_untold ON visit_changes (seq) WHERE told_outbox_id IS NULL;

-- Slotti webhook deliveries, recorded before they are answered; a delivery is recorded once
-- per X-Slotti-Shot-ID (Slotti may deliver an event more than once).
CREATE TABLE slotti_deliveries (
    shot_id      TEXT PRIMARY KEY,                   -- X-Slotti-Shot-ID
    event        TEXT NOT NULL,                      -- X-Slotti-Event: booking.created, booking.modified, booking.deleted
    received_at  TEXT NOT NULL,
    payload      TEXT,                               -- the body as received (customer data: NULL once erased)
    processed_at TEXT,                               -- NULL while it waits to be processed
    outcome      TEXT                                -- what processing made of it, in words
) WITHOUT ROWID;
CREATE INDEX slotti_deliveries_pending ON slotti_deliveries (received_at) WHERE processed_at IS NULL;

-- Feed events for visits, from their history (every writer records a change row), in the same
-- transaction as the change: visit.booked, visit.moved, visit.cancelled.
CREATE TRIGGER feed_visit_change AFTER INSERT ON visit_changes
BEGIN
    INSERT INTO feed (at, type, account, ticket_id, data)
    SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'visit.' || NEW.what, v.account, v.ticket_id,
           json_object('visit_id', v.id, 'booking_guid', v.booking_guid,
                       'start', NEW.new_start, 'end', NEW.new_end,
                       'old_start', NEW.old_start, 'old_end', NEW.old_end,
                       'technician', v.technician_name, 'source', NEW.source)
    FROM visits v WHERE v.id = NEW.visit_id;
END;

-- The open tickets, as 002 left the view, with the start of the next visit: the ticket's live
-- visit (booked or moved) that has not ended yet.
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
         ORDER BY v.start_at LIMIT 1) AS next_visit_start
FROM tickets t
WHERE t.open = 1;
