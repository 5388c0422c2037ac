-- 002: the push path. Actions queued by `huoltosync task ...`, delivered to Tampuuri by the relay.

-- One row per action, kept after delivery for audit (attachment bytes are dropped then).
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY,
    account           TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('accept', 'hold', 'done', 'create')),
    ticket_id         INTEGER,                    -- the ticket acted on (NULL for a create)
    -- Actions with the same (account, queue_ticket) are delivered one at a time, in id order:
    -- a ticket's own actions, and follow-up creates of that ticket as parent. NULL: a create
    -- without a parent, which waits for nothing.
    queue_ticket      INTEGER,
    payload           TEXT    NOT NULL,           -- the action as JSON (huoltosync's own format, not Tampuuri's)
    from_state        TEXT,                       -- the state it was queued from (mirrored or pending)
    expected_state    TEXT,                       -- the ticket's state once it took effect
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    -- 1 while a send may have reached Tampuuri without us knowing: the next attempt first
    -- checks whether it took effect.
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
    marker            TEXT                        -- a create: the correlation marker in TyotehtavanLisatiedot
);
CREATE INDEX outbox_queue ON outbox (account, queue_ticket, id) WHERE status IN ('pending', 'dead');
CREATE INDEX outbox_status ON outbox (status, next_attempt_at);
CREATE INDEX outbox_ticket ON outbox (account, ticket_id);

-- Attachments of creates: the bytes until delivered, then only name, type and size.
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

-- The open tickets with our pending work on them: the latest pending (or dead-lettered)
-- action's target state, and how many actions wait.
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
         WHERE o.account = t.account AND o.queue_ticket = t.id AND o.status IN ('pending', 'dead')) AS pending_actions
FROM tickets t
WHERE t.open = 1;
