//! The end of a piece of work: its outcome logged and counted, failed work and failing
//! accounts backed off, successes reset.

use std::time::Duration;

use tokio::time::Instant;

use super::{Daemon, Done, Happened, WORK_BACKOFF, Work};
use crate::domain::backoff::Backoff;
use crate::service::cycle::CycleReport;

impl Daemon {
    pub(super) async fn work_done(&mut self, done: Done) {
        self.work = None;
        let (work, ok) = match done {
            Done::Cycle(Ok(report)) => {
                self.account_outcomes(&report);
                crate::service::metrics::record_cycle(&report.syncs, &report.push);
                (Work::Poll, true)
            }
            Done::Cycle(Err(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "The store failed; the work will be tried again."
                );
                (Work::Poll, false)
            }
            Done::Push(Ok(_)) => (Work::Push, true),
            Done::Push(Err(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "The store failed; the work will be tried again."
                );
                (Work::Push, false)
            }
            Done::Webhook(Ok(p)) => {
                if p.slotti.processed > 0 {
                    tracing::info!(
                        processed = p.slotti.processed,
                        moved = p.slotti.moved,
                        cancelled = p.slotti.cancelled,
                        recovered = p.slotti.recovered,
                        ignored = p.slotti.ignored,
                        "Slotti webhook deliveries processed."
                    );
                }
                if p.fetched + p.skipped + p.ignored + p.failed > 0 {
                    tracing::info!(
                        fetched = p.fetched,
                        skipped = p.skipped,
                        ignored = p.ignored,
                        failed = p.failed,
                        parked = p.parked,
                        deferred = p.deferred,
                        "Webhook events processed."
                    );
                }
                if let Some(due) = p.next_due {
                    self.webhook_due_in((due - (self.now)()).to_std().unwrap_or(Duration::ZERO));
                }
                (Work::Webhook, true)
            }
            Done::Webhook(Err(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "Webhook processing failed; the events stay pending."
                );
                // Its backoff delays the next pass.
                self.webhook_due_in(Duration::ZERO);
                (Work::Webhook, false)
            }
            Done::Reconcile(Ok(run)) => (Work::Reconcile, run.ok),
            Done::Reconcile(Err(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "The store failed during a Slotti reconciliation; the next one tries again."
                );
                (Work::Reconcile, false)
            }
            Done::Purge(Ok(p)) => {
                tracing::info!(
                    tickets = p.tickets_erased,
                    rows = p.rows_deleted,
                    feed_events = p.feed_events_deleted,
                    idempotency_keys = p.idempotency_keys_deleted,
                    "Daily purge done."
                );
                (Work::Purge, true)
            }
            Done::Purge(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "The daily purge failed.");
                (Work::Purge, false)
            }
            Done::Crashed(work, why) => {
                tracing::error!(work = work.name(), error = %why, "A background task ended abnormally.");
                (work, false)
            }
        };
        if ok {
            self.failed_work.succeeded(&work);
        } else {
            metrics::counter!("huoltosync_work_failed_total", "work" => work.name()).increment(1);
            let (failures, wait) = self.failed_work.failed(work, &WORK_BACKOFF, Instant::now());
            tracing::warn!(
                work = work.name(),
                failures,
                backoff_s = wait.as_secs_f64(),
                "Work failed; backing off."
            );
        }
        self.report(Happened::WorkFinished(work, ok));
        self.refresh_metrics().await;
    }

    /// Backs off the accounts that failed; resets those that synced.
    pub(super) fn account_outcomes(&mut self, report: &CycleReport) {
        let rule = Backoff::doubling(
            self.config.schedule.backoff_initial,
            self.config.schedule.backoff_max,
        );
        for r in &report.syncs {
            if r.error.is_none() {
                if self.accounts.succeeded(&r.account) {
                    tracing::info!(account = %r.account, "Account synced again; its backoff is reset.");
                    self.report(Happened::AccountRecovered(r.account.clone()));
                }
                continue;
            }
            let (failures, delay) = self
                .accounts
                .failed(r.account.clone(), &rule, Instant::now());
            tracing::warn!(account = %r.account, failures, backoff_s = delay.as_secs(), "Account failed; backing off.");
            self.report(Happened::AccountBackoff {
                account: r.account.clone(),
                failures,
                delay,
            });
        }
    }
}
