-- 001: the read path. The mirror of Tampuuri tickets, its history, sync runs and API metering.
-- Times are RFC 3339 text in UTC ("2026-11-25T18:35:29.123Z") unless a column says otherwise.

-- One row per (account, ticket) ever seen in our open set. Never deleted by a sync: a ticket
-- that leaves the open set gets open = 0 and left_at. An unchanged ticket's row is never
-- rewritten; when it was last confirmed open is the end of its account's last successful run.
CREATE TABLE tickets (
    account         TEXT    NOT NULL,             -- Tampuuri account (X-TiliNimi)
    id              INTEGER NOT NULL,             -- ticket id, local to the account
    state           TEXT    NOT NULL,             -- remote state name: Avoin, Vastaanotettu, Odottaa, Tehty, Valmis, or as received
    title           TEXT,                         -- Otsikko
    description     TEXT,                         -- TyotehtavanKuvaus
    extra_info      TEXT,                         -- TyotehtavanLisatiedot
    assignee_id     INTEGER,                      -- TyonsuorittajaId
    cost_centre_id  INTEGER,                      -- KustannuspaikkaId
    space_id        INTEGER,                      -- TilaId (a space, not a state)
    room_id         INTEGER,                      -- HuoneId
    parent_id       INTEGER,                      -- ParentId: set on follow-up tickets
    urgency         TEXT,                         -- Kiireellisyys
    access          TEXT,                         -- Sisaanpaasy
    fault_class     TEXT,                         -- Vikaluokka
    earliest        TEXT,                         -- SuoritusaikaAikaisintaan, as received
    latest          TEXT,                         -- SuoritusaikaViimeistaan, as received
    reporter_name   TEXT,                         -- Ilmoittaja.Nimi (personal data)
    reporter_phone  TEXT,                         -- Ilmoittaja.Puhelin (personal data)
    reporter_email  TEXT,                         -- Ilmoittaja.Sahkoposti (personal data)
    remote_created  TEXT,                         -- Luotu, as received (with offset)
    remote_modified TEXT,                         -- Muokattu, as received (with offset)
    raw_json        TEXT    NOT NULL,             -- the ticket object exactly as Tampuuri sent it
    content_hash    INTEGER NOT NULL,             -- xxh3-64 of raw_json: an unchanged ticket is not rewritten
    first_seen      TEXT    NOT NULL,
    last_changed    TEXT    NOT NULL,
    open            INTEGER NOT NULL CHECK (open IN (0, 1)),  -- in our open set (ours and unfinished)
    left_at         TEXT,                         -- when it left the open set
    left_reason     TEXT CHECK (left_reason IN ('state', 'reassigned', 'deleted')),
    PRIMARY KEY (account, id)
);
CREATE INDEX tickets_open ON tickets (account, open);
CREATE INDEX tickets_parent ON tickets (account, parent_id) WHERE parent_id IS NOT NULL;

-- Every sync of one account: one row, written at start and finished at the end.
CREATE TABLE sync_runs (
    id            INTEGER PRIMARY KEY,
    account       TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'interrupted')),
    sweeps        INTEGER NOT NULL DEFAULT 0,     -- full sweeps made (more than 1: the list moved while paging)
    pages         INTEGER NOT NULL DEFAULT 0,
    api_calls     INTEGER NOT NULL DEFAULT 0,     -- every request sent, retries included (each is billed)
    seen_count    INTEGER NOT NULL DEFAULT 0,     -- tickets in the open set
    new_count     INTEGER NOT NULL DEFAULT 0,
    changed_count INTEGER NOT NULL DEFAULT 0,
    gone_count    INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX sync_runs_account ON sync_runs (account, id);

-- History of the mirror: what appeared, changed (which fields), left or returned.
CREATE TABLE ticket_changes (
    seq       INTEGER PRIMARY KEY,
    account   TEXT    NOT NULL,
    ticket_id INTEGER NOT NULL,
    run_id    INTEGER REFERENCES sync_runs (id) ON DELETE SET NULL,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('appeared', 'changed', 'left', 'returned')),
    fields    TEXT,                               -- JSON array of the Tampuuri field names that changed
    old_state TEXT,
    new_state TEXT
);
CREATE INDEX ticket_changes_ticket ON ticket_changes (account, ticket_id);

-- API calls per account, day (Europe/Helsinki calendar day, YYYY-MM-DD) and endpoint, for metering.
CREATE TABLE api_calls (
    account  TEXT    NOT NULL,
    day      TEXT    NOT NULL,
    endpoint TEXT    NOT NULL,                    -- method and route template, e.g. "POST ilmoitukset/selaa"
    calls    INTEGER NOT NULL,
    PRIMARY KEY (account, day, endpoint)
) WITHOUT ROWID;

-- The stable read-only interface for the contractor's own systems: the tickets that are ours
-- and unfinished. Columns may be added; existing ones keep their names and meaning.
CREATE VIEW open_tickets AS
SELECT account, id, state, title, description, extra_info, assignee_id, cost_centre_id, space_id,
       room_id, parent_id, urgency, access, fault_class, earliest, latest, reporter_name,
       reporter_phone, reporter_email, remote_created, remote_modified, first_seen, last_changed,
       raw_json
FROM tickets
WHERE open = 1;
