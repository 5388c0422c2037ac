//! Slotti's recorded webhook deliveries processed: each `booking.*` event applied to the visits
//! by the one rule for a booking as Slotti shows it ([`super::sync`]). The listener
//! (`crate::faces::webhook::slotti`) only records and wakes; the daemon's webhook pass runs this.

use chrono::{DateTime, Utc};

use super::sync::{Applied, apply_deleted, apply_seen};
use crate::store::{Handle, VisitSource};

/// Deliveries processed per pass; more wait for the next pass, which comes at once.
pub const BATCH: u32 = 200;

/// What one pass over the recorded deliveries did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveriesProcessed {
    pub processed: u64,
    pub moved: u64,
    pub cancelled: u64,
    pub recovered: u64,
    /// Deliveries of other kinds, not ours, or unreadable.
    pub ignored: u64,
    /// A full batch was processed: more may wait.
    pub more: bool,
}

/// Processes up to [`BATCH`] recorded deliveries, oldest first: `booking.created` and
/// `booking.modified` by [`apply_seen`], `booking.deleted` by [`apply_deleted`]; anything else,
/// and a payload that cannot be read, is marked processed with why. No call to Slotti or
/// Tampuuri. Errors are the store's.
pub async fn process_deliveries(
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<DeliveriesProcessed> {
    let pending = store
        .call(|s| s.visits().pending_slotti_deliveries(BATCH))
        .await?;
    let mut done = DeliveriesProcessed {
        more: pending.len() as u32 >= BATCH,
        ..Default::default()
    };
    for d in pending {
        let payload = d.payload.unwrap_or_default();
        let outcome = match d.event.as_str() {
            "booking.created" | "booking.modified" => {
                match crate::slotti::parse_event_booking(payload.as_bytes()) {
                    Ok(b) => Ok(apply_seen(store, &b, VisitSource::Webhook, now).await?),
                    Err(why) => Err(format!("unreadable booking: {why}")),
                }
            }
            "booking.deleted" => match crate::slotti::parse_deleted_guid(payload.as_bytes()) {
                Ok(guid) => Ok(apply_deleted(store, &guid, VisitSource::Webhook, now).await?),
                Err(why) => Err(format!("unreadable: {why}")),
            },
            other => Err(format!("ignored: event {other:?}")),
        };
        let words = match &outcome {
            Ok(a) => a.describe(),
            Err(why) => why.clone(),
        };
        match outcome {
            Ok(Applied::Moved) => done.moved += 1,
            Ok(Applied::Cancelled) => done.cancelled += 1,
            Ok(Applied::Recovered) => done.recovered += 1,
            Ok(Applied::Unchanged) => {}
            Ok(Applied::Conflict { .. }) | Err(_) => {
                tracing::warn!(shot_id = %d.shot_id, event = %d.event, outcome = %words, "Slotti delivery not applied.");
                done.ignored += 1;
            }
            Ok(_) => done.ignored += 1,
        }
        let shot = d.shot_id.clone();
        store
            .call(move |s| {
                s.visits()
                    .mark_slotti_delivery_processed(&shot, &words, now)
            })
            .await?;
        done.processed += 1;
    }
    Ok(done)
}
