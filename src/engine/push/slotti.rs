//! The relay's Slotti side: one attempt at a queued visit booking (`book` in the outbox), with
//! the durability of the Tampuuri actions. [`super::push_pending`] hands a `book` row to this
//! [`Relay`] and applies the retry rule to what comes back.
//!
//! - Before each `POST bookings/`, the attempt is marked in doubt in its own commit, and the
//!   slot it sends is added to the span of every slot tried (`VisitBooking::tried`, stored
//!   with the mark).
//! - An attempt that starts in doubt (an answer lost, a 5xx, a crash after the send) first
//!   reads `GET bookings` over that span (a day either side, windows of at most 30 days) for
//!   the booking's marker: found, it is delivered ("already applied") with that booking;
//!   not found, it is booked again. Nothing is sent again blindly.
//! - A slot taken meanwhile ([`SlottiError::SlotTaken`], a definite "no") asks for
//!   availability again with the same constraints, without the slots found taken, and books
//!   the first: at most [`MAX_TRIES`] sends per attempt, then it is retried later with the
//!   outbox's backoff (and dead-lettered at its deadline, naming the ticket).
//! - A lost or unreadable answer to the POST leaves the attempt in doubt.
//! - An answer is taken as the booking made only when its `info` carries our marker and its
//!   start, end and resource are the slot sent (`answers_ours`). Any other answer (another
//!   booking's object, a start in the past) is looked up by the marker, like a lost one: what
//!   the calendar holds is recorded and told.
//!
//! A delivered booking is recorded with its visit in one commit (`Visits::deliver_booking`), and
//! Tampuuri is then told ([`crate::engine::visits::tell`]) through the outbox, so that the same pass
//! delivers the accept and the hold too.

use chrono::{DateTime, Duration, Utc};

use super::{Outcome, Proof, Relay, SendFailure, failed_send};
use crate::config::Config;
use crate::domain::action::{Action, BookedSlot, BookingCustomer, VisitBooking};
use crate::domain::time;
use crate::engine::visits::book::{constraints, free_slots};
use crate::remote::Exchange;
use crate::slotti::{Booking, BookingRequest, Client, Contact, SlottiError};
use crate::store::{Handle, NewVisit, OutboxRow, VisitCustomer, VisitInsert};

/// Sends of one booking in one attempt, each after a taken slot.
pub const MAX_TRIES: usize = 5;

/// Delivers visit bookings to Slotti: its client when the config has `[slotti]`.
pub(super) struct SlottiRelay<'a> {
    config: &'a Config,
    client: Option<Client>,
    store: &'a Handle,
}

impl<'a> SlottiRelay<'a> {
    /// Slotti's client on `exchange`, when `config` has `[slotti]`.
    pub(super) fn new(
        config: &'a Config,
        exchange: &Exchange,
        store: &'a Handle,
    ) -> anyhow::Result<Self> {
        let client = match &config.slotti {
            Some(s) => Some(Client::new(config, s, exchange)?),
            None => None,
        };
        Ok(SlottiRelay {
            config,
            client,
            store,
        })
    }

    /// Records the calls of this pass in `api_calls`; answers how many.
    pub(super) async fn meter(&self) -> anyhow::Result<u64> {
        match &self.client {
            Some(c) => c.meter().record(self.store).await,
            None => Ok(0),
        }
    }
}

impl Relay for SlottiRelay<'_> {
    /// The visit booked.
    type Delivered = Box<NewVisit>;

    async fn attempt(&self, row: &OutboxRow) -> anyhow::Result<Outcome<Box<NewVisit>>> {
        attempt(self.config, self.client.as_ref(), self.store, row).await
    }

    /// The delivery recorded with its visit in one commit, then the booking (and any other
    /// untold visit change) told to Tampuuri through the outbox.
    async fn record(
        &self,
        row: &OutboxRow,
        how: &'static str,
        visit: Box<NewVisit>,
    ) -> anyhow::Result<()> {
        let (id, guid) = (row.id, visit.booking_guid.clone());
        let recorded = self
            .store
            .call(move |s| s.visits().deliver_booking(id, how, &visit, time::now()))
            .await?;
        if let VisitInsert::TicketHasVisit(other) = &recorded {
            tracing::error!(account = %row.account, ticket = row.ticket_id, outbox_id = id, booking = %guid, other = %other.booking_guid, "A visit was booked in Slotti for a ticket that already has one; cancel one of them in Slotti.");
        }
        tracing::info!(account = %row.account, ticket = row.ticket_id, outbox_id = id, action = row.kind, outcome = how, booking = %guid, "Visit booked.");
        crate::engine::visits::tell::tell_untold(self.config, self.store).await?;
        Ok(())
    }
}

impl SendFailure for SlottiError {
    /// A refusal is final; bad credentials, a 429 or no connection surely left Slotti
    /// unchanged; anything else may have reached it.
    fn proof(&self, ticket: i64) -> Proof {
        match self {
            SlottiError::Auth { .. }
            | SlottiError::RateLimited { .. }
            | SlottiError::Unreachable { .. } => Proof::NotApplied,
            SlottiError::Rejected { .. }
            | SlottiError::NotFound { .. }
            | SlottiError::Invalid { .. } => Proof::Refused(format!(
                "Slotti refused the visit booking of ticket {ticket}: {self}"
            )),
            _ => Proof::Unknown,
        }
    }
}

/// One attempt at the booking in `row`. `client` is `None` when the config has no `[slotti]`.
/// An error only when the store cannot be used.
async fn attempt(
    config: &Config,
    client: Option<&Client>,
    store: &Handle,
    row: &OutboxRow,
) -> anyhow::Result<Outcome<Box<NewVisit>>> {
    let ticket = row.ticket_id.unwrap_or_default();
    let Action::Book(queued) = &row.action else {
        return Ok(Outcome::Dead(format!(
            "outbox action #{} is not a visit booking",
            row.id
        )));
    };
    let (Some(slotti), Some(client)) = (&config.slotti, client) else {
        return Ok(Outcome::Dead(format!(
            "the visit booking of ticket {ticket} needs Slotti, and the config has no [slotti] section any more"
        )));
    };
    let mut booking: VisitBooking = (**queued).clone();
    let Some(customer) = booking.customer.clone() else {
        return Ok(Outcome::Dead(format!(
            "the resident's contact of the visit booking of ticket {ticket} was erased by the retention purge; book again with `huoltosync task book {ticket}`"
        )));
    };
    if row.in_doubt
        && let Some(done) = look_up_in_doubt(client, row, &booking).await
    {
        return Ok(done);
    }
    let now = time::now();
    let c = constraints(slotti, &booking);
    // The slot chosen when it was queued, while it has not begun; after a taken slot, the
    // first free one that meets the same constraints.
    let mut next = booking.slot.clone().filter(|s| s.start > now);
    let mut taken: Vec<BookedSlot> = Vec::new();
    for _ in 0..MAX_TRIES {
        let slot = match next.take() {
            Some(s) => s,
            None => match free_slot(client, &booking, &c, now, &taken, ticket).await {
                Ok(s) => s,
                Err(failed) => return Ok(failed),
            },
        };
        booking.tried = Some(match booking.tried {
            Some((a, b)) => (a.min(slot.start), b.max(slot.end)),
            None => (slot.start, slot.end),
        });
        booking.slot = Some(slot.clone());
        let marked = Action::Book(Box::new(booking.clone()));
        let id = row.id;
        store
            .call(move |s| {
                s.visits()
                    .begin_book_attempt(id, &time::fmt(time::now()), &marked)
            })
            .await?;
        match client.book(&request(&booking, &slot, &customer)).await {
            Ok(Some(made)) if answers_ours(&made, &booking.marker, &slot) => {
                return Ok(booked("sent", row, &booking, &made));
            }
            Ok(answer) => {
                if let Some(other) = &answer {
                    tracing::warn!(
                        ticket,
                        outbox_id = row.id,
                        answered = %other.guid,
                        answered_start = %other.start,
                        sent_start = %slot.start,
                        "Slotti answered the booking with an object that is not the booking sent (another marker, time or resource); looking the booking up by its marker."
                    );
                }
                return Ok(look_up_sent(client, row, &booking).await);
            }
            Err(SlottiError::SlotTaken { .. }) => {
                tracing::info!(ticket, outbox_id = row.id, start = %slot.start, "The time was taken meanwhile; asking Slotti for the next free one.");
                taken.push(slot);
            }
            Err(e) => return Ok(failed_send(e, ticket)),
        }
    }
    Ok(Outcome::Failed {
        error: format!(
            "ticket {ticket}: each of the {MAX_TRIES} free times tried was taken before it could be booked; tried again later"
        ),
        in_doubt: false,
    })
}

/// An attempt that starts in doubt: the booking carrying `b`'s marker, delivered ("already
/// applied"); `None` when there is none (it is booked again).
async fn look_up_in_doubt(
    client: &Client,
    row: &OutboxRow,
    b: &VisitBooking,
) -> Option<Outcome<Box<NewVisit>>> {
    let ticket = row.ticket_id.unwrap_or_default();
    match find(client, b).await {
        Ok(Some(found)) => Some(booked("already applied", row, b, &found)),
        Ok(None) => None,
        Err(e) => Some(Outcome::Failed {
            error: format!(
                "cannot check whether the last booking of ticket {ticket} was made: {e}"
            ),
            in_doubt: true,
        }),
    }
}

/// Slotti accepted the booking, and its answer does not show it (no object, or one that is
/// not the booking sent): the booking carrying `b`'s marker, delivered as the calendar holds
/// it; not found (yet), the attempt stays in doubt.
async fn look_up_sent(
    client: &Client,
    row: &OutboxRow,
    b: &VisitBooking,
) -> Outcome<Box<NewVisit>> {
    let ticket = row.ticket_id.unwrap_or_default();
    match find(client, b).await {
        Ok(Some(found)) => booked("sent", row, b, &found),
        Ok(None) => Outcome::Failed {
            error: format!(
                "Slotti accepted the booking of ticket {ticket} but does not list it (yet); it is looked for again before anything is sent"
            ),
            in_doubt: true,
        },
        Err(e) => Outcome::Failed {
            error: format!(
                "Slotti accepted the booking of ticket {ticket}, and it cannot be looked up: {e}"
            ),
            in_doubt: true,
        },
    }
}

/// Whether Slotti's answer to `POST bookings/` is the booking sent: its `info` carries our
/// `marker`, and its start, end and resource are the slot's. Anything else (another booking's
/// object, a start in the past) is not trusted: the booking is looked up by its marker.
fn answers_ours(made: &Booking, marker: &str, slot: &BookedSlot) -> bool {
    made.info.as_deref().is_some_and(|i| i.contains(marker))
        && made.start == slot.start
        && made.end == slot.end
        && made.resource_guid.as_deref() == Some(slot.resource_guid.as_str())
}

/// The first free time that meets the booking's constraints, but none of `taken`; when there
/// is none, or Slotti cannot be asked, the attempt's outcome.
async fn free_slot(
    client: &Client,
    booking: &VisitBooking,
    c: &crate::engine::visits::slots::Constraints,
    now: DateTime<Utc>,
    taken: &[BookedSlot],
    ticket: i64,
) -> Result<BookedSlot, Outcome<Box<NewVisit>>> {
    match free_slots(client, booking, c, now, 1, taken).await {
        Ok(mut found) if !found.is_empty() => Ok(found.remove(0)),
        Ok(_) => Err(Outcome::Failed {
            error: format!(
                "no free time of {:?} meets the booking of ticket {ticket} now{}",
                booking.service.name,
                if taken.is_empty() {
                    ""
                } else {
                    " (the ones offered were taken)"
                }
            ),
            in_doubt: false,
        }),
        Err(e) => Err(Outcome::Failed {
            error: format!("cannot ask Slotti for free times for ticket {ticket}: {e}"),
            in_doubt: false,
        }),
    }
}

/// The `POST bookings/` of `slot` for the booking's resident, with its marker in `info`.
fn request(
    booking: &VisitBooking,
    slot: &BookedSlot,
    customer: &BookingCustomer,
) -> BookingRequest {
    BookingRequest {
        resource_id: slot.resource_id,
        start: slot.start,
        end: slot.end,
        customer: Contact {
            first_name: customer.first_name.clone(),
            last_name: customer.last_name.clone(),
            email: customer.email.clone(),
            phone: customer.phone.clone(),
            language: "fi".into(),
        },
        info: Some(booking.info.clone()),
        service_guid: booking.service.guid.clone(),
        duration_minutes: booking.service.duration_minutes,
        any_provider: false,
    }
}

/// The booking carrying `b`'s marker, looked for over the span of the slots tried, a day
/// either side (a booking moved by a dispatcher meanwhile is still found nearby).
async fn find(client: &Client, b: &VisitBooking) -> Result<Option<Booking>, SlottiError> {
    let Some((from, to)) = b.tried.or(b.slot.as_ref().map(|s| (s.start, s.end))) else {
        return Ok(None);
    };
    let (from, to) = lookup_range(from, to);
    Ok(client
        .bookings(from, to)
        .await?
        .into_iter()
        .find(|x| x.info.as_deref().is_some_and(|i| i.contains(&b.marker))))
}

/// `[from − 1 day, to + 1 day)`.
fn lookup_range(from: DateTime<Utc>, to: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (from - Duration::days(1), to + Duration::days(1))
}

/// Delivered with Slotti's booking `made`: the visit to record.
fn booked(
    how: &'static str,
    row: &OutboxRow,
    b: &VisitBooking,
    made: &Booking,
) -> Outcome<Box<NewVisit>> {
    let technician_guid = made
        .resource_guid
        .clone()
        .or_else(|| b.slot.as_ref().map(|s| s.resource_guid.clone()));
    let technician_name = technician_guid
        .as_deref()
        .and_then(|g| b.technician_name(g))
        .map(str::to_owned);
    let customer = b.customer.as_ref().map(|c| VisitCustomer {
        name: Some(
            format!("{} {}", c.first_name, c.last_name)
                .trim()
                .to_owned(),
        ),
        phone: c.phone.clone(),
        email: c.email.clone(),
    });
    Outcome::Delivered(
        how,
        Box::new(NewVisit {
            account: row.account.clone(),
            ticket_id: row.ticket_id.unwrap_or_default(),
            booking_guid: made.guid.clone(),
            marker: b.marker.clone(),
            technician_guid,
            technician_name,
            service_guid: Some(b.service.guid.clone()),
            service_name: Some(b.service.name.clone()),
            start: made.start,
            end: made.end,
            customer: customer.unwrap_or_default(),
            raw_json: made.raw.to_string(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_send_is_retried_dead_lettered_or_in_doubt_by_what_it_proves() {
        let e = crate::slotti::endpoint::BOOK;
        let kind = |o: Outcome<()>| match o {
            Outcome::Failed { in_doubt, .. } => {
                if in_doubt {
                    "doubt"
                } else {
                    "retry"
                }
            }
            Outcome::Dead(_) => "dead",
            Outcome::Delivered(..) => "booked",
        };
        let table = [
            (
                SlottiError::Unreachable {
                    endpoint: e,
                    detail: "refused".into(),
                },
                "retry",
            ),
            (
                SlottiError::RateLimited {
                    endpoint: e,
                    retry_after: None,
                    message: "(no body)".into(),
                },
                "retry",
            ),
            (
                SlottiError::Auth {
                    endpoint: e,
                    status: 401,
                    message: "(no body)".into(),
                },
                "retry",
            ),
            (
                SlottiError::Rejected {
                    endpoint: e,
                    status: 400,
                    message: "no".into(),
                },
                "dead",
            ),
            (
                SlottiError::Invalid {
                    endpoint: e,
                    detail: "bad".into(),
                },
                "dead",
            ),
            (
                SlottiError::InDoubt {
                    endpoint: e,
                    status: Some(502),
                    detail: "x".into(),
                },
                "doubt",
            ),
            (
                SlottiError::Malformed {
                    endpoint: e,
                    detail: "x".into(),
                },
                "doubt",
            ),
            (
                SlottiError::Redirect {
                    endpoint: e,
                    status: 302,
                    location: "x".into(),
                },
                "doubt",
            ),
        ];
        for (err, want) in table {
            let what = format!("{err:?}");
            assert_eq!(kind(failed_send(err, 5)), want, "{what}");
        }
    }

    #[test]
    fn an_answer_is_ours_only_with_our_marker_our_times_and_our_resource() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let slot = BookedSlot {
            resource_guid: "r-1".into(),
            resource_id: 1,
            start: t("2026-04-07T06:00:00Z"),
            end: t("2026-04-07T06:30:00Z"),
        };
        let marker = "[huoltosync:0123456789ab]";
        let answer = |info: Option<&str>, start: &str, end: &str, resource: Option<&str>| Booking {
            guid: "b-1".into(),
            resource_guid: resource.map(str::to_owned),
            created: None,
            modified: None,
            start: t(start),
            end: t(end),
            info: info.map(str::to_owned),
            private_notes: None,
            service_guids: Vec::new(),
            raw: serde_json::Value::Null,
        };
        let ours = "sim-1 #7: Vuoto [huoltosync:0123456789ab]";
        let (a, b) = ("2026-04-07T06:00:00Z", "2026-04-07T06:30:00Z");
        let table = [
            (answer(Some(ours), a, b, Some("r-1")), true),
            // The same instants in another offset are the same times.
            (
                answer(
                    Some(ours),
                    "2026-04-07T09:00:00+03:00",
                    "2026-04-07T09:30:00+03:00",
                    Some("r-1"),
                ),
                true,
            ),
            (
                answer(
                    Some("sim-1 #8: Muu [huoltosync:ffffffffffff]"),
                    a,
                    b,
                    Some("r-1"),
                ),
                false,
            ),
            (answer(None, a, b, Some("r-1")), false),
            (
                answer(
                    Some(ours),
                    "2020-03-02T08:00:00Z",
                    "2020-03-02T08:30:00Z",
                    Some("r-1"),
                ),
                false,
            ),
            (
                answer(Some(ours), a, "2026-04-07T07:00:00Z", Some("r-1")),
                false,
            ),
            (answer(Some(ours), a, b, Some("r-2")), false),
            (answer(Some(ours), a, b, None), false),
        ];
        for (i, (made, want)) in table.iter().enumerate() {
            assert_eq!(
                answers_ours(made, marker, &slot),
                *want,
                "row {i}: {made:?}"
            );
        }
    }

    #[test]
    fn a_lost_booking_is_looked_for_a_day_either_side_of_the_slots_tried() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            lookup_range(t("2026-04-07T06:00:00Z"), t("2026-04-09T06:30:00Z")),
            (t("2026-04-06T06:00:00Z"), t("2026-04-10T06:30:00Z"))
        );
    }
}
