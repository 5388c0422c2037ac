//! Visits: the technician visits booked in Slotti for tickets (`visits`), what happened to each
//! (`visit_changes`: booked, moved, cancelled, and which outbox row told Tampuuri), and Slotti's
//! webhook deliveries (`slotti_deliveries`, deduplicated on their Shot-ID). See
//! `sql/011_visits.sql`.
//!
//! The store speaks no Slotti: callers pass a booking's guid, times and the JSON Slotti showed.
//! Recording what Slotti shows is idempotent, so a webhook and a reconciliation that see the same
//! move record one change, and each change is told to Tampuuri once: `told_outbox_id` is set
//! once, by [`Visits::mark_visit_change_told`].
//!
//! How the callers use it:
//! - **Booking** (`task book` queues, the relay books): refuse a ticket whose
//!   [`Visits::active_visit`] is `Some`; once Slotti confirmed a booking, [`Visits::insert_visit`]
//!   (idempotent on the booking guid, so a relay that crashed after it may run it again).
//! - **Telling Tampuuri**: [`Visits::untold_visit_changes`], oldest first; for each, queue the
//!   hold with `visits::message::render` of the change's new (or, cancelled, old) times, then
//!   [`Visits::mark_visit_change_told`] with the outbox id (false: told already, by another
//!   row). Inside the store, `mark_told` takes a connection, so an outbox transaction can
//!   queue and mark in one commit.
//! - **Webhooks**: [`Visits::record_slotti_delivery`] before answering (false: a replayed
//!   Shot-ID, answer 2xx and do nothing); later [`Visits::pending_slotti_deliveries`], then
//!   [`Visits::record_visit_seen`] (created/modified) or [`Visits::record_visit_cancelled`]
//!   (deleted), then [`Visits::mark_slotti_delivery_processed`].
//! - **Reconciliation**: for each window of `slotti::windows`, every listed booking
//!   that carries our marker goes to [`Visits::record_visit_seen`]; a live visit of
//!   [`Visits::visits`] that starts inside a listed window and is not listed is gone:
//!   [`Visits::record_visit_cancelled`]. `Unknown` answers mean "not ours": ignore.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::Visits;
use crate::domain::time;

/// Where a visit change was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitSource {
    /// huoltosync made the booking.
    Booking,
    /// A Slotti webhook delivery.
    Webhook,
    /// The reconciliation's `GET bookings`.
    Reconcile,
}

impl VisitSource {
    /// The name stored in `visit_changes.source`.
    pub fn name(self) -> &'static str {
        match self {
            VisitSource::Booking => "booking",
            VisitSource::Webhook => "webhook",
            VisitSource::Reconcile => "reconcile",
        }
    }
}

/// The resident a visit was booked for (personal data, erased by the purge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitCustomer {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A booking huoltosync made, to record as a visit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVisit {
    pub account: String,
    pub ticket_id: i64,
    pub booking_guid: String,
    /// The `[huoltosync:…]` marker at the end of the booking's info.
    pub marker: String,
    pub technician_guid: Option<String>,
    pub technician_name: Option<String>,
    pub service_guid: Option<String>,
    pub service_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub customer: VisitCustomer,
    /// The booking as Slotti answered or listed it.
    pub raw_json: String,
}

/// What [`Visits::insert_visit`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum VisitInsert {
    /// Recorded, with its `booked` change (to be told).
    New { visit_id: i64, change_id: i64 },
    /// A visit with this booking guid was already recorded: nothing written.
    Known { visit_id: i64 },
    /// The ticket already has a live visit (booked or moved): nothing written.
    TicketHasVisit(Box<Visit>),
}

/// A booking as Slotti shows it now (a webhook's payload, or a line of `GET bookings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeenBooking<'a> {
    pub booking_guid: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The resource (technician) Slotti shows it for, when the caller knows it.
    pub technician_guid: Option<&'a str>,
    /// That technician's name, when known.
    pub technician_name: Option<&'a str>,
    /// The booking's JSON as Slotti showed it.
    pub raw_json: &'a str,
}

/// What recording a booking as Slotti shows it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitSeen {
    /// No visit has this booking guid (not ours, or not recorded yet).
    Unknown,
    /// Nothing new: the same times (or the same cancellation) were recorded before.
    Unchanged,
    /// A change was recorded (`moved` or `cancelled`), to be told once.
    Changed { change_id: i64 },
}

/// One change of a visit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VisitChange {
    pub id: i64,
    pub at: String,
    /// `booked`, `moved`, `cancelled`.
    pub what: String,
    pub old_start: Option<String>,
    pub old_end: Option<String>,
    pub new_start: Option<String>,
    pub new_end: Option<String>,
    /// `booking`, `webhook`, `reconcile`.
    pub source: String,
    /// The outbox row that told Tampuuri, once queued.
    pub told_outbox_id: Option<i64>,
}

/// A visit as the commands show it (no customer data).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Visit {
    pub id: i64,
    pub account: String,
    pub ticket_id: i64,
    pub booking_guid: String,
    pub marker: String,
    pub technician_guid: Option<String>,
    pub technician: Option<String>,
    pub service_guid: Option<String>,
    pub service: Option<String>,
    /// UTC, RFC 3339.
    pub start: String,
    pub end: String,
    /// `booked`, `moved`, `cancelled`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// Oldest first (filled by [`Visits::visits`]; empty elsewhere).
    pub history: Vec<VisitChange>,
}

/// A change not yet told to Tampuuri, with what the message needs.
#[derive(Debug, Clone, PartialEq)]
pub struct UntoldChange {
    pub change: VisitChange,
    pub visit_id: i64,
    pub account: String,
    pub ticket_id: i64,
    pub booking_guid: String,
    pub technician: Option<String>,
}

/// The next visit of a ticket: its live visit (booked or moved) that has not ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct NextVisit {
    /// UTC, RFC 3339.
    pub start: String,
    pub end: String,
    pub technician: Option<String>,
    /// `booked` or `moved`.
    pub status: String,
}

/// Which visits [`Visits::visits`] lists: those overlapping `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct VisitFilter {
    pub account: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A Slotti webhook delivery waiting to be processed.
#[derive(Debug, Clone, PartialEq)]
pub struct SlottiDelivery {
    pub shot_id: String,
    pub event: String,
    pub received_at: String,
    pub payload: Option<String>,
}

const VISIT_COLUMNS: &str = "id, account, ticket_id, booking_guid, marker, technician_guid, technician_name, \
     service_guid, service_name, start_at, end_at, status, created_at, updated_at";

fn visit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Visit> {
    Ok(Visit {
        id: r.get(0)?,
        account: r.get(1)?,
        ticket_id: r.get(2)?,
        booking_guid: r.get(3)?,
        marker: r.get(4)?,
        technician_guid: r.get(5)?,
        technician: r.get(6)?,
        service_guid: r.get(7)?,
        service: r.get(8)?,
        start: r.get(9)?,
        end: r.get(10)?,
        status: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        history: Vec::new(),
    })
}

const CHANGE_COLUMNS: &str = "c.seq, c.at, c.what, c.old_start, c.old_end, c.new_start, c.new_end, c.source, c.told_outbox_id";

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VisitChange> {
    Ok(VisitChange {
        id: r.get(0)?,
        at: r.get(1)?,
        what: r.get(2)?,
        old_start: r.get(3)?,
        old_end: r.get(4)?,
        new_start: r.get(5)?,
        new_end: r.get(6)?,
        source: r.get(7)?,
        told_outbox_id: r.get(8)?,
    })
}

/// The live visit of a ticket, if any.
fn active_visit(
    conn: &Connection,
    account: &str,
    ticket_id: i64,
) -> rusqlite::Result<Option<Visit>> {
    conn.query_row(
        &format!(
            "SELECT {VISIT_COLUMNS} FROM visits
             WHERE account = ?1 AND ticket_id = ?2 AND status <> 'cancelled'"
        ),
        params![account, ticket_id],
        visit_row,
    )
    .optional()
}

/// `(id, start_at, end_at, status, personal_erased_at)` of the visit with this booking guid.
type VisitState = (i64, String, String, String, Option<String>);

fn by_guid(conn: &Connection, guid: &str) -> rusqlite::Result<Option<VisitState>> {
    conn.query_row(
        "SELECT id, start_at, end_at, status, personal_erased_at FROM visits WHERE booking_guid = ?1",
        [guid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()
}

/// Marks a change told by `outbox_id`, inside the caller's transaction (the outbox may queue
/// the telling and mark it in one): false when it was already told.
pub(super) fn mark_told(
    conn: &Connection,
    change_id: i64,
    outbox_id: i64,
    now: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE visit_changes SET told_outbox_id = ?2, told_at = ?3
         WHERE seq = ?1 AND told_outbox_id IS NULL",
        params![change_id, outbox_id, now],
    )? == 1)
}

/// [`Visits::insert_visit`] inside the caller's transaction (the relay records a delivered
/// booking's visit in the commit that marks its outbox row delivered).
pub(super) fn insert_visit(
    tx: &Connection,
    v: &NewVisit,
    now: DateTime<Utc>,
) -> anyhow::Result<VisitInsert> {
    let now = time::fmt(now);
    if let Some((visit_id, ..)) = by_guid(tx, &v.booking_guid)? {
        return Ok(VisitInsert::Known { visit_id });
    }
    if let Some(existing) = active_visit(tx, &v.account, v.ticket_id)? {
        return Ok(VisitInsert::TicketHasVisit(Box::new(existing)));
    }
    let (start, end) = (time::fmt(v.start), time::fmt(v.end));
    tx.execute(
        "INSERT INTO visits (account, ticket_id, booking_guid, marker, technician_guid, technician_name,
             service_guid, service_name, start_at, end_at, status, customer_name, customer_phone,
             customer_email, raw_json, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'booked', ?11, ?12, ?13, ?14, ?15, ?15)",
        params![
            v.account,
            v.ticket_id,
            v.booking_guid,
            v.marker,
            v.technician_guid,
            v.technician_name,
            v.service_guid,
            v.service_name,
            start,
            end,
            v.customer.name,
            v.customer.phone,
            v.customer.email,
            v.raw_json,
            now
        ],
    )?;
    let visit_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO visit_changes (visit_id, at, what, new_start, new_end, source)
         VALUES (?1, ?2, 'booked', ?3, ?4, 'booking')",
        params![visit_id, now, start, end],
    )?;
    let change_id = tx.last_insert_rowid();
    Ok(VisitInsert::New {
        visit_id,
        change_id,
    })
}

/// Marks a change as not to be told, with why, inside the caller's transaction: false when it
/// was told or marked already.
pub(super) fn mark_not_told(
    conn: &Connection,
    change_id: i64,
    why: &str,
    now: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE visit_changes SET not_told = ?2, told_at = ?3
         WHERE seq = ?1 AND told_outbox_id IS NULL AND not_told IS NULL",
        params![change_id, why, now],
    )? == 1)
}

impl Visits<'_> {
    /// Records a booking huoltosync made as a `booked` visit with its `booked` change (source
    /// `booking`), in one transaction. Idempotent on the booking guid (a second call answers
    /// `Known`); refused (`TicketHasVisit`, nothing written) when the ticket already has a live
    /// visit, which the unique index `visits_one_active` enforces too.
    pub fn insert_visit(
        &mut self,
        v: &NewVisit,
        now: DateTime<Utc>,
    ) -> anyhow::Result<VisitInsert> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = insert_visit(&tx, v, now)?;
        tx.commit()?;
        Ok(done)
    }

    /// Records a booking as Slotti shows it now (a webhook's `booking.created`/`modified`, or a
    /// reconciliation's listing), in one transaction. Other times than recorded are a `moved`
    /// change; the same times record nothing (so the same move seen by a webhook and by the
    /// reconciliation is one change). Another technician replaces the recorded one (with the
    /// name given, or none) but is no change to tell: the resident was told a time. `raw_json`
    /// replaces the stored booking unless the visit's customer data was erased. A cancelled
    /// visit stays cancelled (a late delivery from before the deletion changes nothing).
    pub fn record_visit_seen(
        &mut self,
        seen: &SeenBooking<'_>,
        source: VisitSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<VisitSeen> {
        let now = time::fmt(now);
        let (start, end, raw_json) = (time::fmt(seen.start), time::fmt(seen.end), seen.raw_json);
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some((id, old_start, old_end, status, erased)) = by_guid(&tx, seen.booking_guid)?
        else {
            return Ok(VisitSeen::Unknown);
        };
        if status == "cancelled" {
            return Ok(VisitSeen::Unchanged);
        }
        if let Some(guid) = seen.technician_guid {
            tx.execute(
                "UPDATE visits SET technician_guid = ?2, technician_name = ?3, updated_at = ?4
                 WHERE id = ?1 AND technician_guid IS NOT ?2",
                params![id, guid, seen.technician_name, now],
            )?;
        }
        if old_start == start && old_end == end {
            if erased.is_none() {
                tx.execute(
                    "UPDATE visits SET raw_json = ?2 WHERE id = ?1 AND raw_json IS NOT ?2",
                    params![id, raw_json],
                )?;
            }
            tx.commit()?;
            return Ok(VisitSeen::Unchanged);
        }
        tx.execute(
            "UPDATE visits SET start_at = ?2, end_at = ?3, status = 'moved', updated_at = ?4,
                 raw_json = CASE WHEN personal_erased_at IS NULL THEN ?5 ELSE raw_json END
             WHERE id = ?1",
            params![id, start, end, now, raw_json],
        )?;
        tx.execute(
            "INSERT INTO visit_changes (visit_id, at, what, old_start, old_end, new_start, new_end, source)
             VALUES (?1, ?2, 'moved', ?3, ?4, ?5, ?6, ?7)",
            params![id, now, old_start, old_end, start, end, source.name()],
        )?;
        let change_id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(VisitSeen::Changed { change_id })
    }

    /// Records that a booking is gone from Slotti (a webhook's `booking.deleted`, or a
    /// reconciliation that no longer lists it), in one transaction: a `cancelled` change, once.
    pub fn record_visit_cancelled(
        &mut self,
        booking_guid: &str,
        source: VisitSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<VisitSeen> {
        let now = time::fmt(now);
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some((id, old_start, old_end, status, _)) = by_guid(&tx, booking_guid)? else {
            return Ok(VisitSeen::Unknown);
        };
        if status == "cancelled" {
            return Ok(VisitSeen::Unchanged);
        }
        tx.execute(
            "UPDATE visits SET status = 'cancelled', updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        tx.execute(
            "INSERT INTO visit_changes (visit_id, at, what, old_start, old_end, source)
             VALUES (?1, ?2, 'cancelled', ?3, ?4, ?5)",
            params![id, now, old_start, old_end, source.name()],
        )?;
        let change_id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(VisitSeen::Changed { change_id })
    }

    /// Records that the outbox row `outbox_id` tells Tampuuri about a change: true when marked,
    /// false when the change was already told (by this row or another) or does not exist.
    pub fn mark_visit_change_told(
        &mut self,
        change_id: i64,
        outbox_id: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(mark_told(
            &self.0.conn,
            change_id,
            outbox_id,
            &time::fmt(now),
        )?)
    }

    /// The changes no outbox row tells yet, oldest first.
    pub fn untold_visit_changes(&self) -> anyhow::Result<Vec<UntoldChange>> {
        let mut st = self.0.conn.prepare_cached(&format!(
            "SELECT {CHANGE_COLUMNS}, v.id, v.account, v.ticket_id, v.booking_guid, v.technician_name
             FROM visit_changes c JOIN visits v ON v.id = c.visit_id
             WHERE c.told_outbox_id IS NULL AND c.not_told IS NULL ORDER BY c.seq"
        ))?;
        let v = st
            .query_map([], |r| {
                Ok(UntoldChange {
                    change: change_row(r)?,
                    visit_id: r.get(9)?,
                    account: r.get(10)?,
                    ticket_id: r.get(11)?,
                    booking_guid: r.get(12)?,
                    technician: r.get(13)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The ticket's live visit (booked or moved), if any: a ticket with one gets no second
    /// booking.
    pub fn active_visit(&self, account: &str, ticket_id: i64) -> anyhow::Result<Option<Visit>> {
        Ok(active_visit(&self.0.conn, account, ticket_id)?)
    }

    /// The visit of a booking guid, if it is ours.
    pub fn visit_by_guid(&self, booking_guid: &str) -> anyhow::Result<Option<Visit>> {
        Ok(self
            .0
            .conn
            .query_row(
                &format!("SELECT {VISIT_COLUMNS} FROM visits WHERE booking_guid = ?1"),
                [booking_guid],
                visit_row,
            )
            .optional()?)
    }

    /// Visits (cancelled ones included) that overlap `[from, to)`, by start, each with its
    /// history.
    pub fn visits(&self, f: &VisitFilter) -> anyhow::Result<Vec<Visit>> {
        let mut st = self.0.conn.prepare_cached(&format!(
            "SELECT {VISIT_COLUMNS} FROM visits
             WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR end_at > ?2) AND (?3 IS NULL OR start_at < ?3)
             ORDER BY start_at, account, ticket_id, id"
        ))?;
        let mut visits: Vec<Visit> = st
            .query_map(
                params![f.account, f.from.map(time::fmt), f.to.map(time::fmt)],
                visit_row,
            )?
            .collect::<Result<_, _>>()?;
        let mut history = self.0.conn.prepare_cached(&format!(
            "SELECT {CHANGE_COLUMNS} FROM visit_changes c WHERE c.visit_id = ?1 ORDER BY c.seq"
        ))?;
        for v in &mut visits {
            v.history = history
                .query_map([v.id], change_row)?
                .collect::<Result<_, _>>()?;
        }
        Ok(visits)
    }

    /// Every visit of one ticket (cancelled ones included), newest first, each with its
    /// history: the board's ticket page.
    pub fn ticket_visits(&self, account: &str, ticket_id: i64) -> anyhow::Result<Vec<Visit>> {
        let mut st = self.0.conn.prepare_cached(&format!(
            "SELECT {VISIT_COLUMNS} FROM visits WHERE account = ?1 AND ticket_id = ?2
             ORDER BY start_at DESC, id DESC"
        ))?;
        let mut visits: Vec<Visit> = st
            .query_map(params![account, ticket_id], visit_row)?
            .collect::<Result<_, _>>()?;
        let mut history = self.0.conn.prepare_cached(&format!(
            "SELECT {CHANGE_COLUMNS} FROM visit_changes c WHERE c.visit_id = ?1 ORDER BY c.seq"
        ))?;
        for v in &mut visits {
            v.history = history
                .query_map([v.id], change_row)?
                .collect::<Result<_, _>>()?;
        }
        Ok(visits)
    }

    /// Records a Slotti webhook delivery before it is answered: false (nothing written) when
    /// its Shot-ID was recorded before.
    pub fn record_slotti_delivery(
        &mut self,
        shot_id: &str,
        event: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(self.0.conn.execute(
            "INSERT OR IGNORE INTO slotti_deliveries (shot_id, event, received_at, payload)
             VALUES (?1, ?2, ?3, ?4)",
            params![shot_id, event, time::fmt(now), payload],
        )? == 1)
    }

    /// Deliveries waiting to be processed, oldest first.
    pub fn pending_slotti_deliveries(&self, limit: u32) -> anyhow::Result<Vec<SlottiDelivery>> {
        let mut st = self.0.conn.prepare_cached(
            "SELECT shot_id, event, received_at, payload FROM slotti_deliveries
             WHERE processed_at IS NULL ORDER BY received_at, shot_id LIMIT ?1",
        )?;
        let v = st
            .query_map([limit], |r| {
                Ok(SlottiDelivery {
                    shot_id: r.get(0)?,
                    event: r.get(1)?,
                    received_at: r.get(2)?,
                    payload: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Marks a delivery processed, with what became of it in words: false when it was not
    /// waiting (unknown, or processed before).
    pub fn mark_slotti_delivery_processed(
        &mut self,
        shot_id: &str,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(self.0.conn.execute(
            "UPDATE slotti_deliveries SET processed_at = ?2, outcome = ?3
             WHERE shot_id = ?1 AND processed_at IS NULL",
            params![shot_id, time::fmt(now), outcome],
        )? == 1)
    }
}
