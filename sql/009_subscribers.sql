-- 009: outgoing events. One row per `[[api.subscribers]]` entry (by name): how far along the
-- feed it has been served, and how its current event is failing. A row is created when the
-- daemon first serves that subscriber, with its cursor at the end of the feed then (a new
-- subscriber gets the events from then on, not the history).
CREATE TABLE subscribers (
    name             TEXT    PRIMARY KEY,
    url              TEXT    NOT NULL,
    cursor           INTEGER NOT NULL,               -- the last feed seq delivered (or not wanted)
    attempts         INTEGER NOT NULL DEFAULT 0,     -- failed attempts at the event after cursor
    next_try_at      TEXT,                           -- after a failure: not before this (UTC)
    first_failure_at TEXT,                           -- the first failure of the current event
    last_error       TEXT,
    status           TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead')),
    delivered        INTEGER NOT NULL DEFAULT 0,     -- events delivered, ever
    created_at       TEXT    NOT NULL,
    last_delivery_at TEXT
) STRICT;
