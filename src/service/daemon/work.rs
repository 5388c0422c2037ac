//! Starting work in the slot: a scheduled poll, a Slotti reconciliation, a push between cycles,
//! the daily purge and a webhook processing pass, each under the store lock and skipped (logged
//! and counted) when it cannot start.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Daemon, Done, Happened, PURGE_EVERY, Skip, Work, poll_schedule};
use crate::config::{AccountConfig, Config};
use crate::domain::time;
use crate::service::cycle::cycle;
use crate::service::lock::StoreLock;
use crate::store::Handle;
use crate::tampuuri::Api;

/// A webhook processing pass; when it recorded Slotti visit changes, they are told and pushed.
async fn process_and_tell(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<crate::engine::webhook::Processed> {
    let p = crate::engine::webhook::process_pending(config, api, store, now).await?;
    if p.slotti.moved + p.slotti.cancelled + p.slotti.recovered > 0 {
        crate::service::cycle::tell(config, store).await?;
        crate::engine::push::push_pending(config, api, store).await?;
    }
    Ok(p)
}

/// Slotti's reconciliation, then the telling of what changed and a push.
async fn reconcile_and_tell(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<Box<crate::store::ReconcileRun>> {
    let Some(slotti) = &config.slotti else {
        anyhow::bail!("no [slotti] section");
    };
    let run =
        crate::engine::visits::reconcile::run(config, slotti, api.exchange(), store, now).await?;
    crate::service::cycle::tell(config, store).await?;
    crate::engine::push::push_pending(config, api, store).await?;
    Ok(Box::new(run))
}

impl Daemon {
    /// A scheduled poll: a cycle over the accounts not backing off.
    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        if let Some((running, _)) = &self.work {
            tracing::warn!(
                schedule = poll_schedule(&self.config).expr(),
                running = running.name(),
                "Skipping a scheduled poll: the previous work is still running."
            );
            self.skipped(Work::Poll, Skip::Running);
            return;
        }
        if let Some((failures, left)) = self.failed_work.waiting(&Work::Poll, now) {
            tracing::warn!(
                failures,
                retry_in_s = left.as_secs(),
                "Skipping a scheduled poll: the last one failed; backing off."
            );
            self.skipped(Work::Poll, Skip::BackingOff);
            return;
        }
        let Some(lock) = self.lock(Work::Poll) else {
            return;
        };
        let mut due: Vec<AccountConfig> = Vec::new();
        for a in &self.config.accounts {
            match self.accounts.waiting(&a.name, now) {
                Some((failures, left)) => {
                    tracing::info!(account = %a.name, failures, retry_in_s = left.as_secs(), "Account backing off after failures; skipped this tick.");
                    self.report(Happened::AccountSkipped(a.name.clone()));
                }
                None => due.push(a.clone()),
            }
        }
        let names = due.iter().map(|a| a.name.clone()).collect();
        let (c, a, s) = (self.config.clone(), self.api.clone(), self.store.clone());
        let jitter = self.config.schedule.jitter;
        self.start_work(Work::Poll, names, async move {
            let r = cycle(&c, &a, &s, &due, jitter).await;
            drop(lock);
            Done::Cycle(r)
        });
    }

    /// `[slotti] reconcile`: a reconciliation, the telling of what changed, and a push, in the
    /// work slot like a poll (skipped while other work runs, another process holds the lock,
    /// or the last one failed and backs off).
    pub(super) fn slotti_tick(&mut self) {
        let work = Work::Reconcile;
        if self.config.slotti.is_none() {
            return;
        }
        if let Some((running, _)) = &self.work {
            tracing::warn!(
                running = running.name(),
                "Skipping a Slotti reconciliation: other work is still running."
            );
            self.skipped(work, Skip::Running);
            return;
        }
        if let Some((failures, left)) = self.failed_work.waiting(&work, Instant::now()) {
            tracing::warn!(
                failures,
                retry_in_s = left.as_secs(),
                "Skipping a Slotti reconciliation: the last one failed; backing off."
            );
            self.skipped(work, Skip::BackingOff);
            return;
        }
        let Ok(lock) = self.try_lock(work) else {
            return;
        };
        let (c, a, s, clock) = (
            self.config.clone(),
            self.api.clone(),
            self.store.clone(),
            self.now,
        );
        self.start_work(work, Vec::new(), async move {
            let r = reconcile_and_tell(&c, &a, &s, clock()).await;
            drop(lock);
            Done::Reconcile(r)
        });
    }

    /// Between cycles: webhook events due, queued actions, the daily purge.
    pub(super) async fn push_check(&mut self) {
        if self.work.is_some() {
            return;
        }
        let now = (self.now)();
        if self.config.webhook.is_some() && self.webhook_at.is_none() {
            let stamp = time::fmt(now);
            if self
                .store
                .call(move |s| s.webhook().due_event_count(&stamp))
                .await
                .unwrap_or(0)
                > 0
            {
                self.webhook_due_in(Duration::ZERO);
            }
        }
        let due = self
            .store
            .call(|s| s.outbox().next_due())
            .await
            .ok()
            .flatten();
        if due.as_deref().and_then(time::parse).is_none_or(|d| d > now) {
            self.maybe_purge();
            return;
        }
        if self
            .failed_work
            .waiting(&Work::Push, Instant::now())
            .is_some()
        {
            return;
        }
        let Some(lock) = self.lock(Work::Push) else {
            return;
        };
        let (c, a, s) = (self.config.clone(), self.api.clone(), self.store.clone());
        self.start_work(Work::Push, Vec::new(), async move {
            let r = crate::engine::push::push_pending(&c, &a, &s).await;
            drop(lock);
            Done::Push(r)
        });
    }

    pub(super) fn maybe_purge(&mut self) {
        let now = Instant::now();
        if now < self.next_purge || self.failed_work.waiting(&Work::Purge, now).is_some() {
            return;
        }
        match self.try_lock(Work::Purge) {
            Ok(lock) => {
                self.next_purge = now + PURGE_EVERY;
                let (c, s, clock) = (self.config.clone(), self.store.clone(), self.now);
                self.start_work(Work::Purge, Vec::new(), async move {
                    let r = s
                        .call(move |st| {
                            st.purge(&crate::service::retention::from_config(&c), clock(), false)
                        })
                        .await;
                    drop(lock);
                    Done::Purge(r)
                });
            }
            // Another process works on the store: the next check tries again.
            Err(Skip::Busy) => {}
            Err(_) => self.next_purge = now + Duration::from_secs(3600),
        }
    }

    pub(super) fn webhook_due_in(&mut self, wait: Duration) {
        let at = Instant::now() + wait;
        self.webhook_at = Some(self.webhook_at.map_or(at, |t| t.min(at)));
    }

    pub(super) fn webhook_due(&mut self) {
        self.webhook_at = None;
        if self.work.is_some() {
            self.webhook_due_in(Duration::ZERO);
            return;
        }
        if let Some((_, left)) = self.failed_work.waiting(&Work::Webhook, Instant::now()) {
            self.webhook_due_in(left);
            return;
        }
        match self.try_lock(Work::Webhook) {
            Ok(lock) => {
                let (c, a, s, clock) = (
                    self.config.clone(),
                    self.api.clone(),
                    self.store.clone(),
                    self.now,
                );
                self.start_work(Work::Webhook, Vec::new(), async move {
                    let r = process_and_tell(&c, &a, &s, clock()).await;
                    drop(lock);
                    Done::Webhook(r)
                });
            }
            // Another process works on the store: try again shortly.
            Err(Skip::Busy) => self.webhook_due_in(Duration::from_secs(1)),
            // The next push check looks for due events again.
            Err(_) => {}
        }
    }

    pub(super) fn start_work(
        &mut self,
        work: Work,
        accounts: Vec<String>,
        task: impl Future<Output = Done> + Send + 'static,
    ) {
        self.work = Some((work, tokio::spawn(task)));
        self.report(Happened::WorkStarted(work, accounts));
    }

    pub(super) fn skipped(&self, work: Work, why: Skip) {
        metrics::counter!("huoltosync_work_skipped_total", "work" => work.name(), "reason" => why.name())
            .increment(1);
        self.report(Happened::WorkSkipped(work, why));
    }

    /// The store lock for a scheduled poll, logging why not.
    pub(super) fn lock(&self, work: Work) -> Option<StoreLock> {
        match self.try_lock(work) {
            Ok(l) => Some(l),
            Err(Skip::Busy) => {
                tracing::warn!(
                    work = work.name(),
                    "Skipping a scheduled poll: another process holds the store lock."
                );
                None
            }
            Err(_) => None,
        }
    }

    /// Takes the store lock for `work`. A lock file that cannot even be opened (too many open
    /// files, say) is logged and counted, and the work is skipped until its next turn, never
    /// the end of the daemon.
    pub(super) fn try_lock(&self, work: Work) -> Result<StoreLock, Skip> {
        match StoreLock::try_acquire(&self.config.store.path) {
            Ok(Ok(l)) => Ok(l),
            Ok(Err(busy)) => {
                tracing::debug!(work = work.name(), holder = ?busy.holder, "The store lock is taken; this work waits.");
                self.skipped(work, Skip::Busy);
                Err(Skip::Busy)
            }
            Err(e) => {
                tracing::error!(
                    work = work.name(),
                    error = format!("{e:#}"),
                    "Cannot take the store lock; this work is skipped and tried again later."
                );
                self.skipped(work, Skip::LockFile);
                Err(Skip::LockFile)
            }
        }
    }
}
