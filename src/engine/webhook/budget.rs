//! The fetch budget for tickets the mirror does not hold.
//!
//! A signed delivery may name any ticket ids, and each fetch (`GET ilmoitukset/{id}`) is
//! billed. Tickets the mirror holds are fetched without a limit (there are only so many), and
//! before any other. Of the others, at most `[webhook] max_fetches_per_minute` are fetched per
//! account in any minute (each fetch is recorded in the store before it is sent, so a restart
//! does not reset the count), at most [`PER_PASS`] in one pass so that a delivery about a held
//! ticket never waits behind a long run of them. When more are due than the minute's budget
//! has left, none of them is fetched: their events are parked ([`OVER_BUDGET`]) and one
//! reconciliation sweep of the account (a page per 250 tickets) covers them all, at most one
//! every [`SWEEP_GAP`]. A successful sweep settles the events it covers (`reconciled`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Processed;
use super::fetch::Fetcher;
use crate::domain::time;
use crate::store::PendingEvent;

/// Fetches of tickets the mirror does not hold in one pass; the rest wait for the next pass,
/// which starts at once (after any delivery about a held ticket that came meanwhile).
pub const PER_PASS: usize = 60;
/// The shortest time between the starts of two syncs of an account when a sweep replaces
/// fetches over the budget.
pub const SWEEP_GAP: Duration = Duration::from_secs(10);
/// The reason recorded with events parked over the budget.
pub const OVER_BUDGET: &str = "over [webhook] max_fetches_per_minute; a reconciliation sweep of the account covers the ticket";
/// What `sync_runs.trigger` records for such a sweep.
pub const SWEEP_TRIGGER: &str = "webhook";

/// The window of `[webhook] max_fetches_per_minute`.
const WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// The due groups of tickets of `account` the mirror does not hold: fetched within the
/// budget, or all parked for a sweep.
pub(super) async fn unheld(
    f: &mut Fetcher<'_>,
    account: &str,
    groups: Vec<(i64, Vec<PendingEvent>)>,
    done: &mut Processed,
) -> anyhow::Result<()> {
    let max = f
        .config
        .webhook
        .as_ref()
        .map_or(60, |w| u64::from(w.max_fetches_per_minute));
    let since = time::fmt(f.now - WINDOW);
    let name = account.to_owned();
    let used = f
        .store
        .call(move |s| s.webhook().unheld_fetches_since(&name, &since))
        .await?;
    let left = max.saturating_sub(used);
    if groups.len() as u64 > left {
        let ids: Vec<i64> = groups
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.id))
            .collect();
        let n = ids.len() as u64;
        f.store
            .call(move |s| {
                s.webhook().finish_events(
                    &ids,
                    "parked",
                    Some(OVER_BUDGET),
                    &time::fmt(time::now()),
                )
            })
            .await?;
        done.swept += n;
        tracing::warn!(
            account,
            tickets = groups.len(),
            events = n,
            fetched_last_minute = used,
            max_fetches_per_minute = max,
            "Webhook events name more tickets the mirror does not hold than [webhook] max_fetches_per_minute allows; one reconciliation sweep of the account covers them instead."
        );
        return Ok(());
    }
    let mut rest = groups.into_iter();
    for (id, evs) in rest.by_ref().take(PER_PASS) {
        let (name, now, forget) = (
            account.to_owned(),
            time::fmt(f.now),
            time::fmt(f.now - chrono::Duration::days(1)),
        );
        f.store
            .call(move |s| s.webhook().count_unheld_fetch(&name, &now, &forget))
            .await?;
        f.fetch(account, id, evs, done).await?;
    }
    let waiting: u64 = rest.map(|(_, e)| e.len() as u64).sum();
    if waiting > 0 {
        done.deferred += waiting;
        done.next_due = Some(f.now);
    }
    Ok(())
}

/// One sweep of each account with events parked over the budget, unless one of its syncs
/// started within [`SWEEP_GAP`] (then the pass is due again when it has passed).
pub(super) async fn sweeps(f: &Fetcher<'_>, done: &mut Processed) -> anyhow::Result<()> {
    let wanted = f
        .store
        .call(|s| s.webhook().sweeps_wanted(OVER_BUDGET))
        .await?;
    let gap = chrono::Duration::from_std(SWEEP_GAP).unwrap_or_default();
    for (account, last) in wanted {
        let Some(acc) = f.config.account(&account) else {
            continue;
        };
        if let Some(at) = last.as_deref().and_then(time::parse).map(|t| t + gap)
            && at > f.now
        {
            due(done, at);
            continue;
        }
        let settings = crate::engine::sync::SweepSettings {
            trigger: SWEEP_TRIGGER,
            ..crate::engine::sync::SweepSettings::from_config(f.config)
        };
        let client = f.api.client(acc)?;
        let report =
            crate::engine::sync::sync_account(&f.config.store.path, acc, &client, &settings).await;
        done.sweeps += 1;
        if !report.ok() {
            // The events stay parked; the sweep is tried again after the gap.
            due(done, f.now + gap);
        }
    }
    Ok(())
}

fn due(done: &mut Processed, at: DateTime<Utc>) {
    done.next_due = Some(done.next_due.map_or(at, |d| d.min(at)));
}
