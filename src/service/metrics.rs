//! Prometheus metrics for the daemon (`[metrics] listen`): per account the last sync's
//! duration and outcome, the last success time, open tickets, outbox depth, dead letters, and
//! API calls by endpoint. Labels are accounts and endpoints only (low cardinality).

use std::net::SocketAddr;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::engine::push::PushReport;
use crate::engine::sync::SyncReport;
use crate::store::AccountStatus;

/// Serves `/metrics` on `addr`.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("[metrics] listen = {addr}: cannot serve metrics: {e}"))?;
    tracing::info!(%addr, "Serving Prometheus metrics.");
    Ok(())
}

/// What a cycle did (its syncs and its pushes): durations, outcomes, calls.
pub fn record_cycle(syncs: &[SyncReport], push: &PushReport) {
    for r in syncs {
        let account = r.account.clone();
        gauge!("huoltosync_sync_duration_seconds", "account" => account.clone())
            .set(r.elapsed.as_secs_f64());
        gauge!("huoltosync_sync_ok", "account" => account.clone()).set(if r.ok() {
            1.0
        } else {
            0.0
        });
        counter!("huoltosync_syncs_total", "account" => account.clone(), "outcome" => if r.ok() { "ok" } else { "failed" }).increment(1);
        counter!("huoltosync_api_calls_total", "account" => account.clone(), "kind" => "sync")
            .increment(r.api_calls);
        // Requests that never reached Tampuuri: not billed, so not among the calls.
        counter!("huoltosync_unreached_requests_total", "account" => account)
            .increment(r.unreached);
    }
    counter!("huoltosync_actions_delivered_total").increment(push.delivered.len() as u64);
    counter!("huoltosync_actions_dead_lettered_total").increment(push.dead.len() as u64);
}

/// The store's view of each account.
pub fn record_status(statuses: &[AccountStatus]) {
    for s in statuses {
        let account = s.account.clone();
        if let Some(t) = s
            .last_success
            .as_deref()
            .and_then(crate::domain::time::parse)
        {
            gauge!("huoltosync_last_success_timestamp_seconds", "account" => account.clone())
                .set(t.timestamp() as f64);
        }
        gauge!("huoltosync_open_tickets", "account" => account.clone()).set(s.open_tickets as f64);
        gauge!("huoltosync_outbox_pending", "account" => account.clone())
            .set(s.outbox_pending as f64);
        gauge!("huoltosync_dead_letters", "account" => account.clone()).set(s.dead_letters as f64);
        gauge!("huoltosync_api_calls_today", "account" => account.clone())
            .set(s.calls_today as f64);
        gauge!("huoltosync_api_calls_this_month", "account" => account)
            .set(s.calls_this_month as f64);
        for (endpoint, calls) in &s.calls_by_endpoint_today {
            gauge!("huoltosync_api_calls_today_by_endpoint", "account" => s.account.clone(), "endpoint" => endpoint.clone()).set(*calls as f64);
        }
    }
}

/// A subscriber's state: `huoltosync_subscriber_dead` (1 when its deliveries stopped) and
/// `huoltosync_subscriber_lag_events` (feed events after its cursor). Labelled by subscriber
/// name (a handful per config).
pub fn record_subscriber(row: &crate::store::SubscriberRow) {
    gauge!("huoltosync_subscriber_dead", "subscriber" => row.name.clone())
        .set(if row.status == "dead" { 1.0 } else { 0.0 });
    gauge!("huoltosync_subscriber_lag_events", "subscriber" => row.name.clone())
        .set(row.lag as f64);
}

/// Events a subscriber accepted.
pub fn record_delivered(subscriber: &str, events: u64) {
    counter!("huoltosync_subscriber_events_delivered_total", "subscriber" => subscriber.to_owned())
        .increment(events);
}
