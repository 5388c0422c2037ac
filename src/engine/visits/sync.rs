//! What huoltosync makes of a booking as Slotti shows it, whoever saw it (a webhook delivery or
//! the reconciliation): one rule, so that both record the same change once.
//!
//! - A booking whose guid is one of our visits: its times are recorded
//!   ([`crate::store::Visits::record_visit_seen`]: other times are a `moved` change, the same
//!   times nothing).
//! - A booking we have no visit for, whose `info` ends with our marker (`[huoltosync:…]`): a
//!   booking whose answer was lost, or a store restored from a backup. The outbox row that
//!   carries the marker names the ticket, and the booking is recorded as its visit
//!   ([`crate::store::Visits::insert_visit`], a `booked` change to tell).
//! - Any other booking is not ours and is ignored.
//! - A deleted booking (or one the reconciliation no longer lists) of one of our visits is
//!   `cancelled`, once.

use chrono::{DateTime, Utc};

use crate::slotti::Booking;
use crate::store::{
    Handle, NewVisit, SeenBooking, VisitCustomer, VisitInsert, VisitSeen, VisitSource,
};

/// What became of one booking shown by Slotti.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// No marker of ours and no visit of ours: someone else's booking.
    NotOurs,
    /// Our marker, but no outbox row carries it (not this store's booking).
    UnknownMarker,
    /// One of our visits, as recorded.
    Unchanged,
    /// A `moved` change recorded.
    Moved,
    /// A `cancelled` change recorded.
    Cancelled,
    /// A booking of ours without a visit, recorded as one.
    Recovered,
    /// A booking of ours without a visit, for a ticket that already has another live visit:
    /// not recorded (the operator decides which booking stays).
    Conflict { visit_guid: String },
    /// A deleted booking that is none of our visits.
    UnknownGuid,
}

impl Applied {
    /// The outcome in words, for `slotti_deliveries.outcome` and the logs.
    pub fn describe(&self) -> String {
        match self {
            Applied::NotOurs => "not ours".into(),
            Applied::UnknownMarker => "our marker, but no outbox row carries it".into(),
            Applied::Unchanged => "unchanged".into(),
            Applied::Moved => "moved".into(),
            Applied::Cancelled => "cancelled".into(),
            Applied::Recovered => "recorded as a visit (by its marker)".into(),
            Applied::Conflict { visit_guid } => {
                format!("ours, but the ticket already has the live visit {visit_guid}")
            }
            Applied::UnknownGuid => "unknown".into(),
        }
    }
}

/// The correlation marker at the end of a booking's `info` (`[huoltosync:…]`), if any: the
/// last one, with its brackets.
pub fn marker_in(info: &str) -> Option<&str> {
    let start = info.rfind("[huoltosync:")?;
    let len = info[start..].find(']')?;
    let marker = &info[start..=start + len];
    (marker.len() > "[huoltosync:]".len() && marker.len() <= 64).then_some(marker)
}

/// Records a booking as Slotti shows it (see the module's rules).
pub async fn apply_seen(
    store: &Handle,
    booking: &Booking,
    source: VisitSource,
    now: DateTime<Utc>,
) -> anyhow::Result<Applied> {
    let raw = booking.raw.to_string();
    let b = booking.clone();
    let seen = store
        .call(move |s| {
            s.visits().record_visit_seen(
                &SeenBooking {
                    booking_guid: &b.guid,
                    start: b.start,
                    end: b.end,
                    technician_guid: b.resource_guid.as_deref(),
                    technician_name: None,
                    raw_json: &raw,
                },
                source,
                now,
            )
        })
        .await?;
    match seen {
        VisitSeen::Unchanged => return Ok(Applied::Unchanged),
        VisitSeen::Changed { .. } => return Ok(Applied::Moved),
        VisitSeen::Unknown => {}
    }
    let Some(marker) = booking.info.as_deref().and_then(marker_in) else {
        return Ok(Applied::NotOurs);
    };
    let m = marker.to_owned();
    let Some((account, ticket_id)) = store.call(move |s| s.visits().ticket_of_marker(&m)).await?
    else {
        return Ok(Applied::UnknownMarker);
    };
    let visit = NewVisit {
        account,
        ticket_id,
        booking_guid: booking.guid.clone(),
        marker: marker.to_owned(),
        technician_guid: booking.resource_guid.clone(),
        technician_name: None,
        service_guid: booking.service_guids.first().cloned(),
        service_name: None,
        start: booking.start,
        end: booking.end,
        customer: VisitCustomer::default(),
        raw_json: booking.raw.to_string(),
    };
    let inserted = store
        .call(move |s| s.visits().insert_visit(&visit, now))
        .await?;
    Ok(match inserted {
        VisitInsert::New { .. } => Applied::Recovered,
        VisitInsert::Known { .. } => Applied::Unchanged,
        VisitInsert::TicketHasVisit(v) => Applied::Conflict {
            visit_guid: v.booking_guid,
        },
    })
}

/// Records that a booking is gone from Slotti.
pub async fn apply_deleted(
    store: &Handle,
    guid: &str,
    source: VisitSource,
    now: DateTime<Utc>,
) -> anyhow::Result<Applied> {
    let g = guid.to_owned();
    let seen = store
        .call(move |s| s.visits().record_visit_cancelled(&g, source, now))
        .await?;
    Ok(match seen {
        VisitSeen::Unknown => Applied::UnknownGuid,
        VisitSeen::Unchanged => Applied::Unchanged,
        VisitSeen::Changed { .. } => Applied::Cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_the_last_bracketed_huoltosync_tag_of_the_info() {
        let table = [
            (
                "Asunto A 1, vuotava hana\n\n[huoltosync:0a1b2c3d4e5f]",
                Some("[huoltosync:0a1b2c3d4e5f]"),
            ),
            (
                "[huoltosync:111] ja [huoltosync:222]",
                Some("[huoltosync:222]"),
            ),
            ("[huoltosync:abc", None),
            ("[huoltosync:]", None),
            ("huoltosync:abc", None),
            ("", None),
        ];
        for (info, want) in table {
            assert_eq!(marker_in(info), want, "{info:?}");
        }
        let long = format!("[huoltosync:{}]", "x".repeat(100));
        assert_eq!(marker_in(&long), None, "an overlong tag is no marker");
    }
}
