//! The reconciliation: `GET bookings` over `[now − 1 day, now + horizon_days]` (in windows of
//! at most 30 days, [`crate::slotti::Client::bookings`]) held against the visits, which catches
//! deliveries that were lost and changes a webhook never told.
//!
//! For each listed booking, [`super::sync::apply_seen`] (a visit of ours with other times is
//! `moved`, a booking of ours no visit records is recorded by its marker, others are ignored).
//! A live visit whose start lies inside the span, recorded before this reconciliation began,
//! and whose guid Slotti does not list, is `cancelled`. If any window cannot be read, nothing
//! is judged gone. Assumed: `GET bookings` lists the bookings that *start* in `[from, to)`; a
//! booking moved by hand beyond the span therefore looks deleted (its visit is cancelled).
//!
//! Every run is recorded in `slotti_reconciles` (shown by `status`) with its calls, which are
//! metered. A failure is logged and counted (`huoltosync_slotti_reconcile_failed_total`) and
//! returned in the run, never as an error: only the store's errors are.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use super::sync::{Applied, apply_deleted, apply_seen};
use crate::config::Config;
use crate::config::SlottiConfig;
use crate::domain::time;
use crate::slotti::Client;
use crate::store::{Handle, ReconcileRun, VisitFilter, VisitSource};

/// How far back the reconciliation looks.
pub const LOOK_BACK: Duration = Duration::days(1);

/// The span the reconciliation reads: `[now − 1 day, now + horizon_days]`.
pub fn span(horizon_days: u32, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (now - LOOK_BACK, now + Duration::days(horizon_days.into()))
}

/// One reconciliation with a client of `config`'s `[slotti]`; see the module.
pub async fn run(
    config: &Config,
    slotti: &SlottiConfig,
    exchange: &crate::remote::Exchange,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<ReconcileRun> {
    match Client::new(config, slotti, exchange) {
        Ok(client) => reconcile(&client, slotti, store, now).await,
        Err(e) => {
            let run = ReconcileRun {
                started_at: time::fmt(now),
                finished_at: time::fmt(time::now()),
                ok: false,
                error: Some(format!("{e:#}")),
                ..Default::default()
            };
            finish(store, run).await
        }
    }
}

/// One reconciliation with `client`.
pub async fn reconcile(
    client: &Client,
    slotti: &SlottiConfig,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<ReconcileRun> {
    let (from, to) = span(slotti.horizon_days, now);
    let mut run = ReconcileRun {
        started_at: time::fmt(now),
        span_from: Some(time::fmt(from)),
        span_to: Some(time::fmt(to)),
        ..Default::default()
    };
    let listed = client.bookings(from, to).await;
    let metered = client.meter().record(store).await;
    run.calls = client.unrecorded_calls() + metered.as_ref().copied().unwrap_or(0);
    if let Err(e) = &metered {
        tracing::warn!(
            error = format!("{e:#}"),
            "Cannot meter Slotti's calls; they stay counted."
        );
    }
    let bookings = match listed {
        Ok(b) => b,
        Err(e) => {
            run.error = Some(format!(
                "GET bookings {}..{}: {e}",
                time::fmt(from),
                time::fmt(to)
            ));
            run.finished_at = time::fmt(time::now());
            return finish(store, run).await;
        }
    };
    run.listed = bookings.len() as u64;
    let mut guids = HashSet::new();
    for b in &bookings {
        guids.insert(b.guid.clone());
        let applied = apply_seen(store, b, VisitSource::Reconcile, now).await?;
        if !matches!(applied, Applied::NotOurs) {
            run.ours += 1;
        }
        match applied {
            Applied::Moved => run.moved += 1,
            Applied::Recovered => run.recovered += 1,
            Applied::Conflict { visit_guid } => tracing::warn!(
                booking = %b.guid,
                visit = %visit_guid,
                "A Slotti booking of ours for a ticket that already has another live visit; not recorded."
            ),
            Applied::UnknownMarker => tracing::warn!(
                booking = %b.guid,
                "A Slotti booking carries a huoltosync marker no outbox row has; ignored."
            ),
            _ => {}
        }
    }
    let (f, t) = (from, to);
    let visits = store
        .call(move |s| {
            s.visits().visits(&VisitFilter {
                account: None,
                from: Some(f),
                to: Some(t),
            })
        })
        .await?;
    let (from_s, to_s, started) = (time::fmt(from), time::fmt(to), time::fmt(now));
    for v in visits {
        let inside = v.start >= from_s && v.start < to_s;
        if v.status == "cancelled"
            || !inside
            || v.created_at >= started
            || guids.contains(&v.booking_guid)
        {
            continue;
        }
        if apply_deleted(store, &v.booking_guid, VisitSource::Reconcile, now).await?
            == Applied::Cancelled
        {
            run.cancelled += 1;
        }
    }
    run.ok = true;
    run.finished_at = time::fmt(time::now());
    finish(store, run).await
}

async fn finish(store: &Handle, run: ReconcileRun) -> anyhow::Result<ReconcileRun> {
    if run.ok {
        tracing::info!(
            listed = run.listed,
            ours = run.ours,
            moved = run.moved,
            cancelled = run.cancelled,
            recovered = run.recovered,
            calls = run.calls,
            "Slotti reconciled."
        );
    } else {
        metrics::counter!("huoltosync_slotti_reconcile_failed_total").increment(1);
        tracing::error!(
            error = run.error.as_deref().unwrap_or(""),
            "Slotti reconciliation failed; the next one tries again."
        );
    }
    let r = run.clone();
    store.call(move |s| s.visits().record_reconcile(&r)).await?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_is_a_day_back_to_the_horizon_and_75_days_are_three_windows() {
        let now = time::parse("2026-03-20T10:00:00Z").unwrap();
        let (from, to) = span(75, now);
        assert_eq!(
            time::fmt(from),
            time::fmt(time::parse("2026-03-19T10:00:00Z").unwrap())
        );
        assert_eq!(to - from, Duration::days(76));
        let w = crate::slotti::windows(from, to, crate::slotti::MAX_WINDOW_DAYS);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|(a, b)| *b - *a <= Duration::days(30)));
    }
}
