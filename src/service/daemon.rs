//! The daemon as an event loop. [`run`] turns what the outside world does (the scheduler's
//! ticks, the push-check timer, webhook deliveries, the end of a piece of work, SIGHUP,
//! SIGTERM, the systemd watchdog) into one closed set of [`Event`]s, and hands them one at a
//! time to [`Daemon::handle`], which decides: what to start, what to skip, what to back off.
//! Everything it needs comes in [`Deps`] (config, store, API, tick source, reload source,
//! webhook wake-ups, the wall clock) and a `shutdown` future, so tests drive it with channels
//! and a paused tokio clock, and production with the cron scheduler and signals
//! (`super::run`).
//!
//! One piece of work (a cycle, a push, a purge, a webhook processing pass) runs at a time,
//! under the store lock, in the work slot. Work that cannot start (the slot is taken, another
//! process holds the lock, the lock file cannot be opened) is skipped, logged and counted;
//! work that fails is logged, counted and backed off (doubling, reset by a success); a
//! failing account is skipped for a backoff that doubles from `[schedule]
//! backoff_initial_secs`. Nothing that happens to one piece of work ends the loop: only a
//! shutdown or the end of the webhook listener does.

mod backoffs;
mod done;
mod reload;
mod work;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) use backoffs::Backoffs;

use super::cycle::CycleReport;
use super::runtime::Runtime;
use crate::config::Config;
use crate::domain::backoff::Backoff;
use crate::domain::time;
use crate::engine::push::PushReport;
use crate::service::schedule::Schedule;
use crate::store::{Handle, PurgeReport};
use crate::tampuuri::Api;

/// Everything that can happen to the daemon.
#[derive(Debug)]
pub enum Event {
    /// The poll schedule fired (or the start-up poll is due).
    Tick,
    /// `[slotti] reconcile` fired.
    SlottiTick,
    /// Time to look for queued actions to push (and for the daily purge).
    PushCheck,
    /// The webhook listener recorded a delivery.
    WebhookWake,
    /// Pending webhook events are due for processing.
    WebhookDue,
    /// The piece of work in the slot ended.
    WorkDone(Done),
    /// Read the config again (SIGHUP).
    Reload,
    /// Time to tell systemd's watchdog that the loop is alive.
    Watchdog,
    /// The webhook listener ended, which it never should: the daemon exits 1.
    ListenerEnded(anyhow::Error),
    /// SIGTERM or SIGINT: take no new work, let running work finish within the grace period.
    Shutdown,
}

/// The kinds of work the slot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// A cycle: push, poll the due accounts, push.
    Poll,
    Push,
    Purge,
    Webhook,
    /// Slotti's reconciliation, the telling of what changed, and a push.
    Reconcile,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Poll => "poll",
            Work::Push => "push",
            Work::Purge => "purge",
            Work::Webhook => "webhook",
            Work::Reconcile => "slotti_reconcile",
        }
    }
}

/// What a piece of work finished with.
#[derive(Debug)]
pub enum Done {
    Cycle(anyhow::Result<CycleReport>),
    Push(anyhow::Result<PushReport>),
    Purge(anyhow::Result<PurgeReport>),
    Webhook(anyhow::Result<crate::engine::webhook::Processed>),
    /// Slotti's reconciliation (a failed one is `Ok` with `ok: false`) and the push after it.
    Reconcile(anyhow::Result<Box<crate::store::ReconcileRun>>),
    /// The task panicked or was cancelled.
    Crashed(Work, String),
}

impl Done {
    /// Whether the work itself succeeded (per-account sync errors aside).
    fn ok(&self) -> bool {
        match self {
            Done::Cycle(r) => r.is_ok(),
            Done::Push(r) => r.is_ok(),
            Done::Purge(r) => r.is_ok(),
            Done::Webhook(r) => r.is_ok(),
            Done::Reconcile(r) => r.as_ref().is_ok_and(|r| r.ok),
            Done::Crashed(..) => false,
        }
    }
}

/// Why a piece of work did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Other work holds the slot.
    Running,
    /// Another process holds the store lock.
    Busy,
    /// The lock file cannot be opened (say, out of file descriptors).
    LockFile,
    /// This kind of work failed lately and is backing off.
    BackingOff,
}

impl Skip {
    fn name(self) -> &'static str {
        match self {
            Skip::Running => "running",
            Skip::Busy => "busy",
            Skip::LockFile => "lock_file",
            Skip::BackingOff => "backing_off",
        }
    }
}

/// What the daemon did, for whoever watches ([`Deps::happened`]): the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    /// Start-up: whether the mirror was stale, so that it polls at once.
    Started {
        poll_now: bool,
    },
    /// Work put in the slot; for a poll, the accounts it covers.
    WorkStarted(Work, Vec<String>),
    WorkSkipped(Work, Skip),
    /// Work ended; `false` when it failed (per-account sync errors are not a failed cycle).
    WorkFinished(Work, bool),
    /// Work still running at the end of the grace period, stopped.
    WorkAbandoned(Work),
    /// An account backing off was left out of a poll.
    AccountSkipped(String),
    /// An account failed and is left out of polls for `delay`.
    AccountBackoff {
        account: String,
        failures: u32,
        delay: Duration,
    },
    /// An account that was backing off synced again.
    AccountRecovered(String),
    Reloaded,
    ReloadRefused,
}

/// What the daemon runs with. Production builds it from the config, the cron scheduler and
/// signals (`super::run`); tests from channels.
pub struct Deps {
    /// Where the config is read again on [`Event::Reload`].
    pub config_path: PathBuf,
    /// The config in force, the remotes, the store and the stop token, shared with every running
    /// part: a reload puts the new config in force there (the tick sources follow it).
    pub runtime: Runtime,
    /// The tick source: one `()` per scheduled poll.
    pub ticks: mpsc::UnboundedReceiver<()>,
    /// One `()` per `[slotti] reconcile` tick (never sends without `[slotti]`).
    pub slotti_ticks: mpsc::UnboundedReceiver<()>,
    /// One `()` per reload request (SIGHUP).
    pub reload: mpsc::UnboundedReceiver<()>,
    /// Notified by the webhook listener after each recorded delivery.
    pub wake: Arc<Notify>,
    /// The listeners' task (the webhook listener, the API); its end before a stop ends the
    /// daemon with an error. At a stop it drains (on the runtime's stop token) within the grace
    /// period.
    pub listener: Option<JoinHandle<anyhow::Result<()>>>,
    /// How often to ping systemd's watchdog, if it watches.
    pub watchdog: Option<Duration>,
    /// The wall clock, for timestamps and webhook due times (`time::now` in production).
    pub now: fn() -> DateTime<Utc>,
    /// Where to report what happened, if anyone listens.
    pub happened: Option<mpsc::UnboundedSender<Happened>>,
}

/// Backoff of work that failed: from 1 s, doubling up to 5 minutes.
const WORK_BACKOFF: Backoff = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(300));

/// How long after start-up the first purge runs, and then how often.
const FIRST_PURGE: Duration = Duration::from_secs(60);
const PURGE_EVERY: Duration = Duration::from_secs(86_400);

/// What to do after an event.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// End the loop; with an error, the daemon exits 1.
    Stop(Option<anyhow::Error>),
}

/// The loop's state and its policy.
pub struct Daemon {
    config_path: PathBuf,
    runtime: Runtime,
    /// The config in force and the remotes built from it (the runtime's, kept at hand).
    config: Arc<Config>,
    api: Api,
    store: Handle,
    now: fn() -> DateTime<Utc>,
    happened: Option<mpsc::UnboundedSender<Happened>>,
    accounts: Backoffs<String>,
    failed_work: Backoffs<Work>,
    /// The work slot.
    work: Option<(Work, JoinHandle<Done>)>,
    next_purge: Instant,
    /// When the next webhook processing pass is due.
    webhook_at: Option<Instant>,
}

/// Runs the daemon until `shutdown` resolves (then lets running work finish within
/// `[service] shutdown_grace_secs`) or the webhook listener ends (an error: exit 1).
pub async fn run(deps: Deps, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Deps {
        config_path,
        runtime,
        mut ticks,
        mut slotti_ticks,
        mut reload,
        wake,
        mut listener,
        watchdog,
        now,
        happened,
    } = deps;
    let mut daemon = Daemon {
        config_path,
        config: runtime.config(),
        api: runtime.remotes(),
        store: runtime.store().clone(),
        runtime,
        now,
        happened,
        accounts: Backoffs::default(),
        failed_work: Backoffs::default(),
        work: None,
        next_purge: Instant::now() + FIRST_PURGE,
        webhook_at: None,
    };
    daemon.start().await;
    let mut push_period = daemon.config.service.push_check;
    let mut push_check = every(push_period);
    let mut watchdog = watchdog.map(every);
    tokio::pin!(shutdown);
    let failure = loop {
        let busy = daemon.work.is_some();
        // Webhook processing waits for a free slot.
        let webhook_at = daemon.webhook_at.filter(|_| !busy);
        let event = tokio::select! {
            () = &mut shutdown => Event::Shutdown,
            ended = async { listener.as_mut().expect("guarded").await }, if listener.is_some() => {
                Event::ListenerEnded(super::listener_ended(ended))
            }
            done = join(&mut daemon.work), if busy => Event::WorkDone(done),
            Some(()) = reload.recv() => Event::Reload,
            Some(()) = ticks.recv() => Event::Tick,
            Some(()) = slotti_ticks.recv() => Event::SlottiTick,
            () = wake.notified() => Event::WebhookWake,
            () = tokio::time::sleep_until(webhook_at.unwrap_or_else(Instant::now)), if webhook_at.is_some() => Event::WebhookDue,
            _ = push_check.tick() => Event::PushCheck,
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => Event::Watchdog,
        };
        if let Flow::Stop(why) = daemon.handle(event).await {
            break why;
        }
        // A reload may change how often queued actions are looked for.
        if daemon.config.service.push_check != push_period {
            push_period = daemon.config.service.push_check;
            push_check = every(push_period);
        }
    };
    // The listeners drain on the token (or, when they failed, are stopped) while the running
    // work finishes.
    daemon.runtime.stop_token().cancel();
    if failure.is_some()
        && let Some(l) = listener.take()
    {
        l.abort();
    }
    daemon.stop(listener).await;
    match failure {
        Some(why) => Err(why),
        None => {
            tracing::info!("Daemon stopped.");
            Ok(())
        }
    }
}

/// Waits for the listeners to drain until `deadline`; stops them then.
async fn drain(
    listener: Option<JoinHandle<anyhow::Result<()>>>,
    deadline: Instant,
    grace: Duration,
) {
    let Some(mut listener) = listener else {
        return;
    };
    match tokio::time::timeout_at(deadline, &mut listener).await {
        Ok(Ok(Ok(()))) => tracing::info!("The listeners drained."),
        Ok(Ok(Err(e))) => tracing::warn!(
            error = format!("{e:#}"),
            "A listener failed while draining."
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "A listener ended abnormally while draining."),
        Err(_) => {
            listener.abort();
            tracing::warn!(
                grace_s = grace.as_secs(),
                "The listeners did not drain within the grace period; the requests still open were cut."
            );
        }
    }
}

/// An interval whose first tick is one period away, and which does not burst after a delay.
fn every(period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(Instant::now() + period, period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

/// Waits for the work in the slot to end (never resolves when the slot is empty).
async fn join(slot: &mut Option<(Work, JoinHandle<Done>)>) -> Done {
    let Some((work, task)) = slot.as_mut() else {
        return std::future::pending().await;
    };
    match task.await {
        Ok(done) => done,
        Err(e) if e.is_panic() => Done::Crashed(*work, panic_message(e.into_panic())),
        Err(e) => Done::Crashed(*work, e.to_string()),
    }
}

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// The full poll's schedule: `[webhook] reconcile` when webhooks are on, else `[schedule] poll`.
pub fn poll_schedule(config: &Config) -> &Schedule {
    config
        .webhook
        .as_ref()
        .map_or(&config.schedule.poll, |w| &w.reconcile)
}

impl Daemon {
    /// Handles one event.
    pub async fn handle(&mut self, event: Event) -> Flow {
        match event {
            Event::Tick => self.tick(),
            Event::SlottiTick => self.slotti_tick(),
            Event::PushCheck => self.push_check().await,
            Event::WebhookWake => {
                // Let a burst of deliveries settle, so that each ticket is fetched once.
                let settle = self
                    .config
                    .webhook
                    .as_ref()
                    .map_or(Duration::ZERO, |w| w.debounce);
                self.webhook_due_in(settle);
            }
            Event::WebhookDue => self.webhook_due(),
            Event::WorkDone(done) => self.work_done(done).await,
            Event::Reload => self.reload(),
            Event::Watchdog => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
            Event::ListenerEnded(why) => {
                tracing::error!(
                    error = format!("{why:#}"),
                    "The webhook listener stopped; exiting so that the service is restarted."
                );
                return Flow::Stop(Some(why));
            }
            Event::Shutdown => return Flow::Stop(None),
        }
        Flow::Continue
    }

    fn report(&self, h: Happened) {
        if let Some(tx) = &self.happened {
            let _ = tx.send(h);
        }
    }

    /// Start-up: READY, the start-up poll when the mirror is stale, events left pending by an
    /// earlier run.
    async fn start(&mut self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        // A mirror older than one interval is polled now, not up to a whole interval later.
        let poll_now = self.stale().await;
        let sched = poll_schedule(&self.config);
        tracing::info!(
            pid = std::process::id(),
            schedule = sched.expr(),
            zone = %sched.zone(),
            poll_now,
            next_poll = sched
                .next_after((self.now)())
                .map_or_else(|| "never".to_owned(), time::fmt),
            accounts = self.config.accounts.len(),
            store = %self.config.store.path.display(),
            "Daemon started."
        );
        self.report(Happened::Started { poll_now });
        self.refresh_metrics().await;
        if poll_now {
            self.tick();
        }
        if self.config.webhook.is_some() {
            self.webhook_due_in(Duration::ZERO);
        }
    }

    /// Whether some account has no successful sync within the poll schedule's longest interval
    /// (or the store cannot say).
    async fn stale(&self) -> bool {
        let names: Vec<String> = self
            .config
            .accounts
            .iter()
            .map(|a| a.name.clone())
            .collect();
        let now = (self.now)();
        let interval = poll_schedule(&self.config).longest_gap(now);
        match self
            .store
            .call(move |s| {
                s.runs()
                    .account_status(&names, &time::local_day(now), &time::local_month(now))
            })
            .await
        {
            Ok(statuses) => statuses.iter().any(|s| {
                s.last_success
                    .as_deref()
                    .and_then(time::parse)
                    .is_none_or(|t| now - t > interval)
            }),
            Err(_) => true,
        }
    }

    /// Shutdown: no new work; running work and the listeners' drain get the grace period.
    async fn stop(&mut self, listener: Option<JoinHandle<anyhow::Result<()>>>) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("Stopping: no new work is started; the listeners drain.");
        let grace = self.config.service.shutdown_grace;
        let deadline = Instant::now() + grace;
        let running = self.work.take();
        let work = async {
            let Some((work, mut running)) = running else {
                return;
            };
            match tokio::time::timeout_at(deadline, &mut running).await {
                Ok(done) => {
                    let ok = done.is_ok_and(|d| d.ok());
                    tracing::info!(work = work.name(), ok, "The running work finished.");
                    self.report(Happened::WorkFinished(work, ok));
                }
                Err(_) => {
                    running.abort();
                    tracing::warn!(
                        work = work.name(),
                        grace_s = grace.as_secs(),
                        "The running work did not finish within the grace period and was stopped; queued actions stay queued (in doubt ones are checked next time)."
                    );
                    self.report(Happened::WorkAbandoned(work));
                }
            }
        };
        tokio::join!(work, drain(listener, deadline, grace));
    }

    async fn refresh_metrics(&self) {
        if self.config.service.metrics_listen.is_none() {
            return;
        }
        let names: Vec<String> = self
            .config
            .accounts
            .iter()
            .map(|a| a.name.clone())
            .collect();
        let now = (self.now)();
        match self
            .store
            .call(move |s| {
                s.runs()
                    .account_status(&names, &time::local_day(now), &time::local_month(now))
            })
            .await
        {
            Ok(statuses) => crate::service::metrics::record_status(&statuses),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "Cannot read the store for metrics."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_polls_schedule_is_reconcile_with_webhooks_else_poll() {
        let base = "[store]\npath = \"/tmp/x.db\"\n[tampuuri]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\ncustomer_name = \"c\"\n[schedule]\npoll = \"0 */5 * * * *\"\n";
        let account =
            "[[accounts]]\nname = \"a\"\nusername = \"u\"\npassword = \"p\"\ncontractor_id = 1\n";
        let load = |extra: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            std::fs::write(&path, format!("{base}{extra}{account}")).unwrap();
            Config::load(&path)
                .map_err(|e| format!("{:?}", e.errors))
                .unwrap()
                .config
        };
        assert_eq!(poll_schedule(&load("")).expr(), "0 */5 * * * *");
        let hooked = load(
            "[webhook]\nlisten = \"127.0.0.1:0\"\nhmac_secret = \"s\"\nreconcile = \"0 0 * * * *\"\n",
        );
        assert_eq!(poll_schedule(&hooked).expr(), "0 0 * * * *");
    }
}
