//! Preparing a visit booking for a mirrored ticket, as `task book` and `[slotti] auto_book` do:
//! the service and technicians (from the command's flags, else [`crate::engine::visits::choose::choose`]),
//! resolved against Slotti's own lists; the resident from the ticket ([`super::resident`]);
//! the `info` whoever reads the calendar sees, ending with the correlation marker; and the
//! free slots that meet the booking's constraints ([`free_slots`], also what the relay asks
//! again when a slot was taken). The booking is then queued through [`crate::engine::queue`] like
//! every other action.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::choose::{TicketFacts, choose};
use super::resident::{self, Overrides};
use super::slots::{self, Constraints};
use crate::config::SlottiConfig;
use crate::domain::action::{BookedService, BookedSlot, BookingCustomer, Technician, VisitBooking};
use crate::engine::queue::QueueError;
use crate::slotti::{Client, SlottiError};
use crate::store::{BookingTicket, Handle};

/// What the operator asks for (`task book`'s flags); all optional.
#[derive(Debug, Clone, Default)]
pub struct BookOptions {
    /// A service name or guid; default: the rule's, else `default_service`.
    pub service: Option<String>,
    /// Technician names or guids; default: the rule's, else any.
    pub technicians: Vec<String>,
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
    pub at: Option<DateTime<Utc>>,
    pub overrides: Overrides,
}

/// How long a Slotti booking's `info` may be before the ticket's title and address are cut
/// (Slotti's own limit is not documented; the marker is never cut).
const MAX_INFO: usize = 1000;

/// Slotti's services and technicians, read once for one or more bookings.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub services: Vec<crate::slotti::Service>,
    pub resources: Vec<Technician>,
}

impl Catalogue {
    /// `GET services` and `GET resources`.
    pub async fn fetch(client: &Client) -> Result<Catalogue, SlottiError> {
        let services = client.services().await?;
        let resources = client
            .resources()
            .await?
            .into_iter()
            .map(|r| Technician {
                guid: r.guid,
                id: r.id,
                name: r.name,
            })
            .collect();
        Ok(Catalogue {
            services,
            resources,
        })
    }
}

/// A booking of ticket `ticket_id` in `account` (no slot yet), or why not: the ticket must be
/// mirrored and open, its resident have a name and a phone or e-mail, and the service and
/// technicians be in Slotti's `catalogue`.
pub async fn prepare(
    slotti: &SlottiConfig,
    catalogue: &Catalogue,
    store: &Handle,
    account: &str,
    ticket_id: i64,
    opts: &BookOptions,
) -> Result<VisitBooking, QueueError> {
    let acc = account.to_owned();
    let ticket = store
        .call(move |s| {
            s.visits().booking_ticket(&acc, ticket_id)
        })
        .await?
        .ok_or_else(|| {
            QueueError::Refused(format!(
                "ticket {ticket_id} is not in the mirror of account {account}: check the id, or run `huoltosync run --once` to refresh the mirror"
            ))
        })?;
    if !ticket.open {
        return Err(QueueError::Refused(format!(
            "ticket {ticket_id} in account {account} has left our open set (state {}): no visit is booked for it",
            ticket.state
        )));
    }
    booking_for(slotti, catalogue, &ticket, opts)
}

/// [`prepare`] for a ticket already read.
pub fn booking_for(
    slotti: &SlottiConfig,
    catalogue: &Catalogue,
    ticket: &BookingTicket,
    opts: &BookOptions,
) -> Result<VisitBooking, QueueError> {
    let customer = resident::customer(
        &ticket.account,
        ticket.id,
        &ticket.reporter,
        &opts.overrides,
    )
    .map_err(|e| QueueError::Refused(e.to_string()))?;
    let choice = choose(slotti, &facts(ticket));
    let service_spec = opts.service.clone().unwrap_or(choice.service);
    let technician_specs = if opts.technicians.is_empty() {
        choice.technicians
    } else {
        opts.technicians.clone()
    };
    let (services, resources) = (&catalogue.services, &catalogue.resources);
    let service = services
        .iter()
        .find(|s| s.guid == service_spec || s.name.trim().eq_ignore_ascii_case(service_spec.trim()))
        .ok_or_else(|| {
            QueueError::Invalid(format!(
                "the service {service_spec:?} is not in Slotti (services: {}); check --service, [[slotti.rules]] service or [slotti] default_service",
                services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
    let Some(duration_minutes) = service.duration_minutes.filter(|d| *d > 0) else {
        return Err(QueueError::Refused(format!(
            "the Slotti service {:?} has no duration, so no time can be booked for it",
            service.name
        )));
    };
    let mut technicians = Vec::new();
    for spec in &technician_specs {
        let t = resources
            .iter()
            .find(|r| r.guid == *spec || r.name.trim().eq_ignore_ascii_case(spec.trim()))
            .ok_or_else(|| {
                QueueError::Invalid(format!(
                    "the technician {spec:?} is not a Slotti resource (resources: {}); check --technician or [[slotti.rules]] technicians",
                    resources.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        technicians.push(t.clone());
    }
    let marker = crate::domain::action::new_marker();
    Ok(VisitBooking {
        service: BookedService {
            guid: service.guid.clone(),
            name: service.name.clone(),
            duration_minutes,
        },
        technicians,
        resources: resources.clone(),
        after: opts.after,
        before: opts.before,
        at: opts.at,
        slot: None,
        tried: None,
        customer: Some(BookingCustomer {
            first_name: customer.first_name,
            last_name: customer.last_name,
            phone: customer.phone,
            email: customer.email,
        }),
        info: info(ticket, &marker),
        marker,
    })
}

/// One booking as `task book` and the board ask for it: which ticket, the operator's options,
/// and who asked (`cli`, `board:<user>`).
#[derive(Debug, Clone)]
pub struct BookRequest {
    /// The account; may be left out as for `task` (see [`crate::engine::queue::QueueRequest`]).
    pub account: Option<String>,
    pub ticket: i64,
    pub opts: BookOptions,
    /// List the first [`DRY_RUN_SLOTS`] free times and queue nothing.
    pub dry_run: bool,
    pub requested_by: String,
}

/// How many free times a dry run lists.
pub const DRY_RUN_SLOTS: usize = 5;

/// What [`book`] did.
#[derive(Debug, Clone)]
pub enum Booked {
    /// A dry run: the booking as prepared and its first free times (never empty).
    Free {
        booking: Box<VisitBooking>,
        slots: Vec<BookedSlot>,
    },
    /// The booking of `slot` queued as outbox row `row`.
    Queued {
        row: Box<crate::store::OutboxRow>,
        booking: Box<VisitBooking>,
        slot: BookedSlot,
    },
}

/// Why [`book`] queued nothing.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// Refused by the checks (the ticket, its visit or queued booking, the resident, the
    /// service or technicians, no free time), or the store failed: the queue's kinds, so
    /// callers map them as for any action.
    #[error(transparent)]
    Refused(#[from] QueueError),
    /// Slotti could not be asked (the client, an unreachable or failing Slotti).
    #[error("Slotti: {0:#}")]
    Slotti(anyhow::Error),
}

impl From<SlottiError> for BookError {
    fn from(e: SlottiError) -> BookError {
        BookError::Slotti(e.into())
    }
}

/// The one path of a visit booking, shared by `huoltosync task book` and the board: the
/// account resolved, the cheap refusals first (a live visit, a booking already queued: no call
/// to Slotti then), Slotti's services and technicians, the booking [`prepare`]d, its free times
/// ([`free_slots`] under [`constraints`]); then a dry run answers the first
/// [`DRY_RUN_SLOTS`], otherwise the first is queued through [`crate::engine::queue`] (which checks
/// again in its transaction). Slotti's calls are metered before it answers. Every call to
/// Slotti is bounded by the client's timeouts and retries.
pub async fn book(
    config: &crate::config::Config,
    exchange: &crate::remote::Exchange,
    store: &Handle,
    req: BookRequest,
) -> Result<Booked, BookError> {
    let Some(slotti) = &config.slotti else {
        return Err(QueueError::Invalid(format!(
            "{}: a visit is booked in Slotti, and the config has no [slotti] section (see config.example.toml)",
            config.source.display()
        ))
        .into());
    };
    let id = req.ticket;
    let account = crate::engine::queue::resolve(config, store, req.account.as_deref(), id).await?;
    refuse_if_booked(store, &account, id, slotti.timezone).await?;
    // On the caller's exchange: the daemon's one for the board, the command's for `task book`.
    let client = Client::new(config, slotti, exchange).map_err(BookError::Slotti)?;
    let result = book_with(config, slotti, &client, store, &account, &req).await;
    if let Err(e) = client.meter().record(store).await {
        tracing::warn!(error = format!("{e:#}"), "Cannot meter the Slotti calls.");
    }
    result
}

/// Refuses ticket `id` when it has a live visit (named by its booking and local time) or a
/// booking waiting in the outbox (pending or dead), before anything asks Slotti.
pub async fn refuse_if_booked(
    store: &Handle,
    account: &str,
    id: i64,
    tz: Tz,
) -> Result<(), QueueError> {
    let acc = account.to_owned();
    let (visit, queued) = store
        .call(move |s| {
            Ok((
                s.visits().active_visit(&acc, id)?,
                s.outbox()
                    .outbox_list(false)?
                    .into_iter()
                    .find(|r| r.kind == "book" && r.account == acc && r.ticket_id == Some(id)),
            ))
        })
        .await?;
    if let Some(v) = visit {
        let when = match (
            crate::domain::time::parse(&v.start),
            crate::domain::time::parse(&v.end),
        ) {
            (Some(s), Some(e)) => super::message::describe(s, e, tz),
            _ => v.start.clone(),
        };
        return Err(QueueError::Refused(format!(
            "ticket {id} in account {account} already has a visit: Slotti booking {} on {}; a booked visit is moved or cancelled in Slotti, and huoltosync follows",
            v.booking_guid, when
        )));
    }
    if let Some(r) = queued {
        return Err(QueueError::Refused(format!(
            "ticket {id} in account {account} already has a visit booking queued as outbox action #{} ({}): see `huoltosync outbox`",
            r.id, r.status
        )));
    }
    Ok(())
}

async fn book_with(
    config: &crate::config::Config,
    slotti: &SlottiConfig,
    client: &Client,
    store: &Handle,
    account: &str,
    req: &BookRequest,
) -> Result<Booked, BookError> {
    let catalogue = Catalogue::fetch(client).await?;
    let mut booking = prepare(slotti, &catalogue, store, account, req.ticket, &req.opts).await?;
    let c = constraints(slotti, &booking);
    let n = if req.dry_run { DRY_RUN_SLOTS } else { 1 };
    let free = free_slots(client, &booking, &c, crate::domain::time::now(), n, &[]).await?;
    let Some(first) = free.first().cloned() else {
        return Err(QueueError::Refused(format!(
            "no free time of {:?} for ticket {} meets the options within [slotti] lead_hours = {} and horizon_days = {}",
            booking.service.name, req.ticket, slotti.lead_hours, slotti.horizon_days
        ))
        .into());
    };
    if req.dry_run {
        return Ok(Booked::Free {
            booking: Box::new(booking),
            slots: free,
        });
    }
    booking.slot = Some(first.clone());
    let request = crate::engine::queue::QueueRequest {
        account: Some(account.to_owned()),
        task: crate::engine::queue::Task::Book {
            ticket: req.ticket,
            booking: Box::new(booking.clone()),
        },
        requested_by: Some(req.requested_by.clone()),
    };
    let row = crate::engine::queue::queue(config, store, request).await?;
    Ok(Booked::Queued {
        row: Box::new(row),
        booking: Box::new(booking),
        slot: first,
    })
}

/// `[slotti] auto_book`: queues a booking of the first free time (chosen by the relay) for
/// every ticket first seen at or after `since` (the cycle's sync) that is `Avoin`, matches a
/// `[[slotti.rules]]` entry, has a resident with a name and a phone or e-mail, and has no
/// visit and no booking yet; the others are skipped with a log line. Slotti's catalogue is
/// read once, and only when there is a candidate. Answers how many were queued.
pub async fn auto_book(
    config: &crate::config::Config,
    client: &Client,
    store: &Handle,
    since: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let Some(slotti) = config.slotti.as_ref().filter(|s| s.auto_book) else {
        return Ok(0);
    };
    let since = crate::domain::time::fmt(since);
    let candidates = store
        .call(move |s| s.visits().auto_book_candidates(&since))
        .await?;
    let candidates: Vec<BookingTicket> = candidates
        .into_iter()
        .filter(|t| config.account(&t.account).is_some())
        .filter(|t| choose(slotti, &facts(t)).rule.is_some())
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let catalogue = Catalogue::fetch(client).await?;
    let mut queued = 0;
    for t in candidates {
        let booking = match booking_for(slotti, &catalogue, &t, &BookOptions::default()) {
            Ok(b) => b,
            Err(e) => {
                tracing::info!(account = %t.account, ticket = t.id, reason = %e, "Not booked automatically.");
                continue;
            }
        };
        let request = crate::engine::queue::QueueRequest {
            account: Some(t.account.clone()),
            task: crate::engine::queue::Task::Book {
                ticket: t.id,
                booking: Box::new(booking),
            },
            requested_by: Some("auto_book".into()),
        };
        match crate::engine::queue::queue(config, store, request).await {
            Ok(_) => queued += 1,
            Err(QueueError::Failed(e)) => return Err(e),
            Err(e) => {
                tracing::info!(account = %t.account, ticket = t.id, reason = %e, "Not booked automatically.");
            }
        }
    }
    Ok(queued)
}

/// What [`choose`] looks at in a ticket.
pub fn facts(t: &BookingTicket) -> TicketFacts {
    TicketFacts {
        account: t.account.clone(),
        urgency: t.urgency.clone(),
        fault_class: t.fault_class.clone(),
        cost_centre: t.cost_centre_id.map(|c| c.to_string()),
    }
}

/// `sim-1 #1003: Vuotava hana, As Oy Esimerkki, Katu 1 [huoltosync:…]`: account, ticket id,
/// title and address for whoever reads the calendar, then the marker (never cut).
pub fn info(t: &BookingTicket, marker: &str) -> String {
    let parts: Vec<String> = [&t.title, &t.address]
        .into_iter()
        .flatten()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    let mut text = format!("{} #{}", t.account, t.id);
    if !parts.is_empty() {
        text = format!("{text}: {}", parts.join(", "));
    }
    let text: String = text.chars().take(MAX_INFO).collect();
    format!("{text} {marker}")
}

/// The constraints of `b` under `[slotti]`'s lead time and horizon.
pub fn constraints(slotti: &SlottiConfig, b: &VisitBooking) -> Constraints {
    let mut c = Constraints::new(slotti.lead_hours, slotti.horizon_days);
    c.after = b.after;
    c.before = b.before;
    c.at = b.at;
    c.technicians = b.technicians.iter().map(|t| t.guid.clone()).collect();
    c
}

/// The first `n` free slots of `b`'s service that meet `c` at `now`, leaving out `excluded`
/// (slots found taken): one `POST bookings/serviceavailability` over the constraints' range
/// (for one technician when only one is allowed). Empty when no range is possible.
pub async fn free_slots(
    client: &Client,
    b: &VisitBooking,
    c: &Constraints,
    now: DateTime<Utc>,
    n: usize,
    excluded: &[BookedSlot],
) -> Result<Vec<BookedSlot>, SlottiError> {
    let Some((from, to)) = c.range(now) else {
        return Ok(Vec::new());
    };
    let one = match b.technicians.as_slice() {
        [t] => Some(t.id),
        _ => None,
    };
    let offered: Vec<slots::Slot> = client
        .availability(from, to, &b.service.guid, b.service.duration_minutes, one)
        .await?
        .into_iter()
        .map(|s| slots::Slot {
            resource_guid: s.resource_guid,
            resource_id: s.resource_id,
            start: s.start.to_utc(),
            end: s.end.to_utc(),
        })
        .filter(|s| {
            !excluded
                .iter()
                .any(|x| x.resource_guid == s.resource_guid && x.start == s.start)
        })
        .collect();
    Ok(slots::candidates(&offered, c, now, n)
        .into_iter()
        .map(|s| BookedSlot {
            resource_guid: s.resource_guid,
            resource_id: s.resource_id,
            start: s.start,
            end: s.end,
        })
        .collect())
}

/// A time as `task book` takes it: RFC 3339 (`2026-12-01T09:00:00+02:00`), a wall-clock time
/// in `tz` (`2026-12-01T09:00`, `2026-12-01 09:00`) or a date (its midnight in `tz`).
pub fn parse_time(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    let local = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            format!("{s:?} is not a time: give 2026-12-01T09:00 (local), 2026-12-01, or RFC 3339")
        })?;
    // A wall-clock time skipped by a daylight-saving change does not exist; one repeated is
    // read as the earlier.
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.to_utc())
        .ok_or_else(|| {
            format!("{s:?} does not exist on the clock of {tz} (a daylight-saving change)")
        })
}

/// `ti 1.12. klo 9.00–9.30 Asentaja 1`: a slot as the commands list it.
pub fn describe_slot(b: &VisitBooking, s: &BookedSlot, tz: Tz) -> String {
    let who = b.technician_name(&s.resource_guid).unwrap_or("?");
    format!("{} {who}", super::message::describe(s.start, s.end, tz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Reporter, TicketState};

    fn ticket(title: Option<&str>, address: Option<&str>) -> BookingTicket {
        BookingTicket {
            account: "sim-1".into(),
            id: 1003,
            state: TicketState::Avoin,
            open: true,
            title: title.map(Into::into),
            address: address.map(Into::into),
            reporter: Reporter::default(),
            urgency: None,
            fault_class: None,
            cost_centre_id: Some(7),
            first_seen: String::new(),
        }
    }

    #[test]
    fn the_info_names_the_ticket_and_ends_with_the_marker() {
        let m = "[huoltosync:0123456789ab]";
        assert_eq!(
            info(
                &ticket(Some("Vuotava\nhana"), Some("As Oy Esimerkki, Katu 1")),
                m
            ),
            "sim-1 #1003: Vuotava hana, As Oy Esimerkki, Katu 1 [huoltosync:0123456789ab]"
        );
        assert_eq!(info(&ticket(None, None), m), format!("sim-1 #1003 {m}"));
        let long = "x".repeat(5000);
        let i = info(&ticket(Some(&long), None), m);
        assert!(
            i.ends_with(m) && i.chars().count() <= MAX_INFO + 1 + m.len(),
            "{}",
            i.len()
        );
    }

    #[test]
    fn times_are_read_as_rfc_3339_or_on_the_calendars_wall_clock() {
        let tz = chrono_tz::Europe::Helsinki;
        let t = |s: &str| parse_time(s, tz).map(|t| t.to_rfc3339());
        assert_eq!(t("2026-12-01T09:00").unwrap(), "2026-12-01T07:00:00+00:00");
        assert_eq!(t("2026-12-01 09:00").unwrap(), "2026-12-01T07:00:00+00:00");
        assert_eq!(t("2026-07-01").unwrap(), "2026-06-30T21:00:00+00:00");
        assert_eq!(
            t("2026-12-01T09:00:00Z").unwrap(),
            "2026-12-01T09:00:00+00:00"
        );
        // 03:30 does not exist on 29 March 2026 in Helsinki (03:00 → 04:00).
        assert!(t("2026-03-29T03:30").unwrap_err().contains("daylight"));
        assert!(t("huomenna").unwrap_err().contains("2026-12-01T09:00"));
    }
}
