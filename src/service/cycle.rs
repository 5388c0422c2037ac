//! One cycle (push, poll, `[slotti] auto_book`, tell visit changes, push): what the daemon runs
//! on each tick; `run --once` runs [`once`], the same cycle with Slotti's deliveries and a
//! reconciliation ([`slotti_step`]) before the telling and the last push.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{AccountConfig, Config};
use crate::engine::push::PushReport;
use crate::engine::sync::SyncReport;
use crate::engine::visits::deliveries::DeliveriesProcessed;
use crate::store::{Handle, ReconcileRun};
use crate::tampuuri::Api;

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    pub syncs: Vec<SyncReport>,
    pub push: PushReport,
    /// With `[slotti]`, in `run --once`: Slotti's part.
    pub slotti: Option<Box<SlottiReport>>,
}

/// What Slotti's part of a run did. Its failures are logged and counted, never fatal.
#[derive(Debug, Default)]
pub struct SlottiReport {
    /// The recorded webhook deliveries processed.
    pub deliveries: DeliveriesProcessed,
    pub reconcile: ReconcileRun,
}

impl CycleReport {
    /// Every account synced and nothing was dead-lettered.
    pub fn ok(&self) -> bool {
        self.syncs.iter().all(SyncReport::ok) && self.push.dead.is_empty()
    }
}

/// One cycle over `accounts`: push what is queued, poll, push what was queued meanwhile. The
/// caller holds the store lock.
pub async fn cycle(
    config: &Config,
    api: &Api,
    store: &Handle,
    accounts: &[AccountConfig],
    jitter: Duration,
) -> anyhow::Result<CycleReport> {
    run(config, api, store, accounts, jitter, false).await
}

/// `run --once`: push, poll, with `[slotti]` its deliveries and a reconciliation (and the
/// telling of what changed), then push, so that one run tells Tampuuri what Slotti shows.
pub async fn once(config: &Config, api: &Api, store: &Handle) -> anyhow::Result<CycleReport> {
    run(config, api, store, &config.accounts, Duration::ZERO, true).await
}

async fn run(
    config: &Config,
    api: &Api,
    store: &Handle,
    accounts: &[AccountConfig],
    jitter: Duration,
    with_slotti: bool,
) -> anyhow::Result<CycleReport> {
    let mut push = crate::engine::push::push_pending(config, api, store).await?;
    let polled_at = crate::domain::time::now();
    let syncs = crate::engine::sync::sync_accounts(config, api, accounts, jitter).await;
    if let Some(slotti) = config.slotti.as_ref().filter(|s| s.auto_book) {
        // Tickets this poll brought that a rule says to book: booked by the second push.
        let client = crate::slotti::Client::new(config, slotti, api.exchange())?;
        let booked =
            crate::engine::visits::book::auto_book(config, &client, store, polled_at).await;
        client.meter().record(store).await?;
        if let Err(e) = booked {
            tracing::warn!(
                error = format!("{e:#}"),
                "Automatic visit booking failed; new tickets are booked by hand (`huoltosync task book`)."
            );
        }
    }
    // Visit changes recorded meanwhile (Slotti's webhooks, the reconciliation) are told with
    // this cycle's second push.
    let slotti = match with_slotti {
        true => slotti_step(config, api, store, crate::domain::time::now()).await?,
        false => {
            tell(config, store).await?;
            None
        }
    };
    let again = crate::engine::push::push_pending(config, api, store).await?;
    push.delivered.extend(again.delivered);
    push.dead.extend(again.dead);
    push.pending = again.pending;
    push.api_calls += again.api_calls;
    Ok(CycleReport {
        syncs,
        push,
        slotti,
    })
}

/// Slotti's part of a run, with `[slotti]` (else `None`): the recorded webhook deliveries (in
/// bounded batches), a reconciliation, then [`tell`]. The caller pushes afterwards. Errors
/// are the store's.
pub async fn slotti_step(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Box<SlottiReport>>> {
    let Some(slotti) = &config.slotti else {
        return Ok(None);
    };
    let mut deliveries = DeliveriesProcessed::default();
    // At most this many batches here; the rest waits for the next run.
    for _ in 0..10 {
        let p = crate::engine::visits::deliveries::process_deliveries(store, now).await?;
        deliveries.processed += p.processed;
        deliveries.moved += p.moved;
        deliveries.cancelled += p.cancelled;
        deliveries.recovered += p.recovered;
        deliveries.ignored += p.ignored;
        deliveries.more = p.more;
        if !p.more {
            break;
        }
    }
    let reconcile =
        crate::engine::visits::reconcile::run(config, slotti, api.exchange(), store, now).await?;
    tell(config, store).await?;
    Ok(Some(Box::new(SlottiReport {
        deliveries,
        reconcile,
    })))
}

/// Queues what Tampuuri is to be told of the visit changes recorded (booked, moved,
/// cancelled), before a push.
pub async fn tell(config: &Config, store: &Handle) -> anyhow::Result<()> {
    if config.slotti.is_some() {
        crate::engine::visits::tell::tell_untold(config, store).await?;
    }
    Ok(())
}
