//! The store's side of booking visits in Slotti: what a booking needs to know of a ticket,
//! the in-doubt mark of a booking with the slot it is sent for, and its delivery recorded with
//! its visit in one commit. Queueing a booking and telling Tampuuri go through the outbox
//! (`outbox.rs`: `enqueue_by`, `enqueue_tell`); the visits themselves are `visits.rs`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{VisitInsert, Visits};
use crate::domain::action::Action;
use crate::domain::model::{Reporter, TicketState};
use crate::domain::time;
use crate::store::NewVisit;

/// What booking a visit for a mirrored ticket reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingTicket {
    pub account: String,
    pub id: i64,
    pub state: TicketState,
    pub open: bool,
    pub title: Option<String>,
    /// The site's address as text, when the ticket has one.
    pub address: Option<String>,
    pub reporter: Reporter,
    pub urgency: Option<String>,
    pub fault_class: Option<String>,
    pub cost_centre_id: Option<i64>,
    pub first_seen: String,
}

const BOOKING_TICKET: &str = "SELECT account, id, state, open, title, address,
        reporter_name, reporter_phone, reporter_email, urgency, fault_class, cost_centre_id, first_seen
     FROM tickets";

fn booking_ticket(r: &rusqlite::Row<'_>) -> rusqlite::Result<BookingTicket> {
    Ok(BookingTicket {
        account: r.get(0)?,
        id: r.get(1)?,
        state: TicketState::from_name(&r.get::<_, String>(2)?),
        open: r.get(3)?,
        title: r.get(4)?,
        address: r.get(5)?,
        reporter: Reporter {
            name: r.get(6)?,
            phone: r.get(7)?,
            email: r.get(8)?,
        },
        urgency: r.get(9)?,
        fault_class: r.get(10)?,
        cost_centre_id: r.get(11)?,
        first_seen: r.get(12)?,
    })
}

impl Visits<'_> {
    /// Ticket `id` of `account` as a booking needs it.
    pub fn booking_ticket(&self, account: &str, id: i64) -> anyhow::Result<Option<BookingTicket>> {
        Ok(self
            .0
            .conn
            .query_row(
                &format!("{BOOKING_TICKET} WHERE account = ?1 AND id = ?2"),
                params![account, id],
                booking_ticket,
            )
            .optional()?)
    }

    /// Open tickets first seen at or after `since`, in state Avoin, with no visit (live or
    /// not) and no booking in the outbox (of any status): the candidates of `[slotti]
    /// auto_book`, by account and id.
    pub fn auto_book_candidates(&self, since: &str) -> anyhow::Result<Vec<BookingTicket>> {
        let mut st = self.0.conn.prepare_cached(&format!(
            "{BOOKING_TICKET} t WHERE t.open = 1 AND t.first_seen >= ?1 AND t.state = 'Avoin'
               AND NOT EXISTS (SELECT 1 FROM visits v WHERE v.account = t.account AND v.ticket_id = t.id)
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.account = t.account AND o.ticket_id = t.id
                               AND o.kind = 'book')
             ORDER BY t.account, t.id"
        ))?;
        let v = st
            .query_map(params![since], booking_ticket)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The in-doubt mark of a booking about to be sent: like [`Outbox::begin_attempt`](super::Outbox::begin_attempt), and
    /// the action as it is sent (its slot, and the span of every slot tried) replaces the
    /// stored one in the same commit, so that a crash after the send leaves the span to look
    /// in.
    pub fn begin_book_attempt(
        &mut self,
        id: i64,
        now: &str,
        action: &Action,
    ) -> anyhow::Result<()> {
        self.0.conn.execute(
            "UPDATE outbox SET in_doubt = 1, attempts = attempts + 1, last_attempt_at = ?2, payload = ?3
             WHERE id = ?1 AND status = 'pending' AND kind = 'book'",
            params![id, now, serde_json::to_string(action)?],
        )?;
        Ok(())
    }

    /// A booking delivered: its outbox row marked delivered (`outcome`: `sent`, `already
    /// applied`) and its visit recorded with its `booked` change, in one transaction. The
    /// visit is recorded as [`Visits::insert_visit`] would (idempotent on the booking guid).
    pub fn deliver_booking(
        &mut self,
        id: i64,
        outcome: &'static str,
        visit: &NewVisit,
        now: DateTime<Utc>,
    ) -> anyhow::Result<VisitInsert> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = super::visits::insert_visit(&tx, visit, now)?;
        tx.execute(
            "UPDATE outbox SET status = 'delivered', in_doubt = 0, delivered_at = ?2, outcome = ?3,
                 last_error = NULL WHERE id = ?1",
            params![id, time::fmt(now), outcome],
        )?;
        tx.commit()?;
        Ok(done)
    }
}
