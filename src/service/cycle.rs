//! One cycle (push, poll, `[slotti] auto_book`, tell visit changes, push): what `run --once`
//! runs, and the daemon on each tick.

use std::time::Duration;

use crate::config::{AccountConfig, Config};
use crate::push::PushReport;
use crate::store::Handle;
use crate::sync::SyncReport;
use crate::tampuuri::Api;

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    pub syncs: Vec<SyncReport>,
    pub push: PushReport,
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
    let mut push = crate::push::push_pending(config, api, store).await?;
    let polled_at = crate::time::now();
    let syncs = crate::sync::sync_accounts(config, api, accounts, jitter).await;
    if let Some(slotti) = &config.slotti {
        if slotti.auto_book {
            // Tickets this poll brought that a rule says to book: booked by the second push.
            let client = crate::slotti::Client::new(config, slotti)?;
            let booked = crate::slotti::book::auto_book(config, &client, store, polled_at).await;
            client.record_calls(store).await?;
            if let Err(e) = booked {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "Automatic visit booking failed; new tickets are booked by hand (`huoltosync task book`)."
                );
            }
        }
        // Visit changes recorded meanwhile (Slotti's webhooks, the reconciliation) are told
        // with this cycle's second push.
        crate::slotti::tell::tell_untold(config, store).await?;
    }
    let again = crate::push::push_pending(config, api, store).await?;
    push.delivered.extend(again.delivered);
    push.dead.extend(again.dead);
    push.pending = again.pending;
    push.api_calls += again.api_calls;
    Ok(CycleReport { syncs, push })
}
