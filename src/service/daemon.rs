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

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cycle::{CycleReport, cycle};
use crate::backoff::Backoff;
use crate::config::{AccountConfig, Config};
use crate::lock::StoreLock;
use crate::push::PushReport;
use crate::schedule::Schedule;
use crate::store::{Handle, PurgeReport};
use crate::tampuuri::Api;
use crate::time;

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
    Webhook(anyhow::Result<crate::webhook::Processed>),
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
    pub config: Config,
    pub api: Api,
    pub store: Handle,
    /// The tick source: one `()` per scheduled poll.
    pub ticks: mpsc::UnboundedReceiver<()>,
    /// One `()` per `[slotti] reconcile` tick (never sends without `[slotti]`).
    pub slotti_ticks: mpsc::UnboundedReceiver<()>,
    /// The poll schedule in force; a reload sends the new one here (the tick source follows it).
    pub schedule: watch::Sender<Schedule>,
    /// One `()` per reload request (SIGHUP).
    pub reload: mpsc::UnboundedReceiver<()>,
    /// Notified by the webhook listener after each recorded delivery.
    pub wake: Arc<Notify>,
    /// The webhook listener's task; its end ends the daemon with an error.
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

/// Failure counts and the time until which each key (an account, a kind of work) waits.
#[derive(Debug)]
pub(crate) struct Backoffs<K> {
    map: HashMap<K, (u32, Instant)>,
}

impl<K> Default for Backoffs<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Backoffs<K> {
    /// `(failures, time left)` while `key` is backing off at `now`.
    pub(crate) fn waiting(&self, key: &K, now: Instant) -> Option<(u32, Duration)> {
        self.map
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(n, until)| (*n, *until - now))
    }

    /// Counts a failure of `key` at `now`: `(failures, how long it now waits)`.
    pub(crate) fn failed(&mut self, key: K, rule: &Backoff, now: Instant) -> (u32, Duration) {
        let entry = self.map.entry(key).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let wait = rule.delay(entry.0);
        entry.1 = now + wait;
        (entry.0, wait)
    }

    /// A success resets `key`; whether it had failed.
    pub(crate) fn succeeded(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }
}

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
    config: Config,
    api: Api,
    store: Handle,
    schedule: watch::Sender<Schedule>,
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
        config,
        api,
        store,
        mut ticks,
        mut slotti_ticks,
        schedule,
        mut reload,
        wake,
        mut listener,
        watchdog,
        now,
        happened,
    } = deps;
    let mut daemon = Daemon {
        config_path,
        config,
        api,
        store,
        schedule,
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
    if let Some(l) = listener {
        l.abort();
    }
    daemon.stop().await;
    match failure {
        Some(why) => Err(why),
        None => {
            tracing::info!("Daemon stopped.");
            Ok(())
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
pub(crate) fn poll_schedule(config: &Config) -> &Schedule {
    config
        .webhook
        .as_ref()
        .map_or(&config.schedule.poll, |w| &w.reconcile)
}

/// A webhook processing pass; when it recorded Slotti visit changes, they are told and pushed.
async fn process_and_tell(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<crate::webhook::Processed> {
    let p = crate::webhook::process_pending(config, api, store, now).await?;
    if p.slotti.moved + p.slotti.cancelled + p.slotti.recovered > 0 {
        super::cycle::tell(config, store).await?;
        crate::push::push_pending(config, api, store).await?;
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
    let run = crate::slotti::reconcile::run(config, slotti, api.exchange(), store, now).await?;
    super::cycle::tell(config, store).await?;
    crate::push::push_pending(config, api, store).await?;
    Ok(Box::new(run))
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
            .call(move |s| s.account_status(&names, &time::local_day(now), &time::local_month(now)))
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

    /// A scheduled poll: a cycle over the accounts not backing off.
    fn tick(&mut self) {
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
    fn slotti_tick(&mut self) {
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
    async fn push_check(&mut self) {
        if self.work.is_some() {
            return;
        }
        let now = (self.now)();
        if self.config.webhook.is_some() && self.webhook_at.is_none() {
            let stamp = time::fmt(now);
            if self
                .store
                .call(move |s| s.due_event_count(&stamp))
                .await
                .unwrap_or(0)
                > 0
            {
                self.webhook_due_in(Duration::ZERO);
            }
        }
        let due = self.store.call(|s| s.next_due()).await.ok().flatten();
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
            let r = crate::push::push_pending(&c, &a, &s).await;
            drop(lock);
            Done::Push(r)
        });
    }

    fn maybe_purge(&mut self) {
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
                            st.purge(&crate::retention::from_config(&c), clock(), false)
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

    fn webhook_due_in(&mut self, wait: Duration) {
        let at = Instant::now() + wait;
        self.webhook_at = Some(self.webhook_at.map_or(at, |t| t.min(at)));
    }

    fn webhook_due(&mut self) {
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

    fn start_work(
        &mut self,
        work: Work,
        accounts: Vec<String>,
        task: impl Future<Output = Done> + Send + 'static,
    ) {
        self.work = Some((work, tokio::spawn(task)));
        self.report(Happened::WorkStarted(work, accounts));
    }

    fn skipped(&self, work: Work, why: Skip) {
        metrics::counter!("huoltosync_work_skipped_total", "work" => work.name(), "reason" => why.name())
            .increment(1);
        self.report(Happened::WorkSkipped(work, why));
    }

    /// The store lock for a scheduled poll, logging why not.
    fn lock(&self, work: Work) -> Option<StoreLock> {
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
    fn try_lock(&self, work: Work) -> Result<StoreLock, Skip> {
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

    async fn work_done(&mut self, done: Done) {
        self.work = None;
        let (work, ok) = match done {
            Done::Cycle(Ok(report)) => {
                self.account_outcomes(&report);
                crate::metrics::record_cycle(&report.syncs, &report.push);
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
    fn account_outcomes(&mut self, report: &CycleReport) {
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

    /// Reads the config again; an invalid one is logged and the running one kept.
    fn reload(&mut self) {
        let loaded = match Config::load(&self.config_path) {
            Ok(l) => l,
            // One event: every problem on one line, so the journal keeps them together.
            Err(e) => {
                tracing::error!(
                    config = %e.path.display(),
                    problems = %e.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    "Config reload failed; keeping the running config."
                );
                self.report(Happened::ReloadRefused);
                return;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let new = loaded.config;
        match Api::new(&new) {
            Ok(api) => {
                let sched = poll_schedule(&new).clone();
                self.schedule.send_if_modified(|s| {
                    let changed = *s != sched;
                    if changed {
                        *s = sched;
                    }
                    changed
                });
                self.api = api;
                self.config = new;
                tracing::info!(
                    schedule = self.config.schedule.poll.expr(),
                    accounts = self.config.accounts.len(),
                    "Config reloaded."
                );
                self.report(Happened::Reloaded);
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "Config reload failed; keeping the running config."
                );
                self.report(Happened::ReloadRefused);
            }
        }
    }

    /// Shutdown: no new work; running work gets the grace period.
    async fn stop(&mut self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("Stopping: no new work is started.");
        let Some((work, mut running)) = self.work.take() else {
            return;
        };
        let grace = self.config.service.shutdown_grace;
        match tokio::time::timeout(grace, &mut running).await {
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
            .call(move |s| s.account_status(&names, &time::local_day(now), &time::local_month(now)))
            .await
        {
            Ok(statuses) => crate::metrics::record_status(&statuses),
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

    #[tokio::test(start_paused = true)]
    async fn a_failing_key_waits_twice_as_long_each_time_up_to_the_cap_and_a_success_resets_it() {
        let rule = Backoff::doubling(Duration::from_secs(2), Duration::from_secs(5));
        let mut b: Backoffs<&str> = Backoffs::default();
        let t0 = Instant::now();
        assert_eq!(b.waiting(&"a", t0), None, "nothing failed yet");
        // (failure at, expected failures, expected wait)
        for (at, n, wait) in [(0, 1, 2), (2, 2, 4), (6, 3, 5), (11, 4, 5)] {
            let now = t0 + Duration::from_secs(at);
            assert_eq!(b.waiting(&"a", now), None, "{at}: the last wait is over");
            assert_eq!(b.failed("a", &rule, now), (n, Duration::from_secs(wait)));
            assert_eq!(
                b.waiting(&"a", now + Duration::from_secs(1)),
                Some((n, Duration::from_secs(wait - 1)))
            );
            assert_eq!(b.waiting(&"b", now), None, "keys are independent");
        }
        assert!(b.succeeded(&"a"));
        assert!(!b.succeeded(&"a"), "reset once");
        assert_eq!(b.failed("a", &rule, t0), (1, Duration::from_secs(2)));
    }

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
