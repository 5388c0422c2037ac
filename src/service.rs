//! The service shell: one cycle (push, poll, push) as `run --once` and the daemon run it, and
//! the daemon itself (`huoltosync run`).
//!
//! The daemon polls at start-up when an account's last successful sync is older than one
//! interval (a restart loop does not spend billed calls on a fresh mirror), then on
//! `[schedule] poll`, in `[schedule] timezone`, with tokio-cron-scheduler (whose job is created
//! again at each daylight-saving change, see `PollJob`). The scheduler's job only sends a tick
//! to the daemon's loop; the loop decides. Work (a cycle, a push, a purge) runs one at a time
//! under the store lock ([`crate::lock`]): a tick that comes while work is running, or while
//! another process (a `run --once`) holds the lock, is skipped and logged, never
//! overlapped. Between cycles the loop looks for queued actions every `[service] push_check_ms`
//! and pushes them. A failing account is skipped for a backoff that doubles up to a cap and
//! resets on success. SIGHUP reloads the config (an invalid one is logged and the old one kept);
//! SIGTERM or SIGINT stops taking work, lets running work finish within
//! `[service] shutdown_grace_secs`, and exits 0. Under systemd (`Type=notify`) it reports READY,
//! STOPPING and the watchdog.
//!
//! A piece of work that cannot start (say the lock file cannot be opened because the process
//! ran out of file descriptors) is skipped, logged and counted
//! (`huoltosync_work_skipped_total`); the next tick tries again. With `[webhook]`, the listener
//! runs beside the loop; if it ever ends, the daemon exits 1 so that systemd restarts it, rather
//! than running on deaf. Deliveries wake the loop; a ticket's events are processed once its
//! deliveries settle (`[webhook] debounce_ms`, at most `debounce_max_ms` after the first).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::{AccountConfig, Config};
use crate::lock::StoreLock;
use crate::push::PushReport;
use crate::schedule::Schedule;
use crate::store::Handle;
use crate::sync::SyncReport;
use crate::tampuuri::Api;
use crate::time;

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
    let syncs = crate::sync::sync_accounts(config, api, accounts, jitter).await;
    let again = crate::push::push_pending(config, api, store).await?;
    push.delivered.extend(again.delivered);
    push.dead.extend(again.dead);
    push.pending = again.pending;
    push.api_calls += again.api_calls;
    Ok(CycleReport { syncs, push })
}

/// Per-account failure backoff.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// What a piece of background work finished with.
enum Done {
    Cycle(anyhow::Result<CycleReport>),
    Push(anyhow::Result<PushReport>),
    Purge(anyhow::Result<crate::store::PurgeReport>),
    Webhook(anyhow::Result<crate::webhook::Processed>),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<ExitCode> {
    let mut config = config;
    let mut api = Api::new(&config)?;
    let store = Handle::open(config.store.path.clone()).await?;
    if let Some(addr) = config.service.metrics_listen {
        crate::metrics::install(addr)?;
    }
    // Webhooks: the listener records deliveries and wakes the loop; events left pending by an
    // earlier run are processed first.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut listener_task = match &config.webhook {
        Some(w) => {
            let listener = tokio::net::TcpListener::bind(w.listen).await.map_err(|e| {
                anyhow::anyhow!("[webhook] listen = {}: cannot listen: {e}", w.listen)
            })?;
            tracing::info!(addr = %w.listen, path = %w.path, reconcile = w.reconcile.expr(), "Webhook listener started; polling becomes reconciliation.");
            let (w, s, k) = (w.clone(), store.clone(), wake.clone());
            wake.notify_one();
            Some(tokio::spawn(crate::webhook::serve(
                listener,
                w,
                s,
                k,
                std::future::pending(),
            )))
        }
        None => None,
    };
    // The HTTP API, when configured: served beside the loop, on its own store connections.
    let mut api_task = crate::api::spawn(&config).await?;
    let (tick_tx, mut tick_rx) = mpsc::unbounded_channel::<()>();
    let mut scheduler = JobScheduler::new().await?;
    let job = PollJob::start(&scheduler, poll_sched(&config), tick_tx.clone()).await?;
    scheduler.start().await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut push_check = tokio::time::interval(config.service.push_check);
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let mut watchdog_tick =
        tokio::time::interval(Duration::from_micros(watchdog_usec.max(2_000_000) / 2));
    let mut next_purge = Instant::now() + Duration::from_secs(60);
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    let mut work: Option<tokio::task::JoinHandle<Done>> = None;
    // When the next webhook processing pass is due.
    let mut webhook_at: Option<tokio::time::Instant> = None;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    // A mirror older than one interval is polled now, not up to a whole interval later.
    let poll_now = stale_at_start(&config, &store).await;
    if poll_now {
        let _ = tick_tx.send(());
    }
    tracing::info!(
        pid = std::process::id(),
        schedule = poll_schedule(&config),
        zone = %poll_sched(&config).zone(),
        poll_now,
        next_poll = poll_sched(&config)
            .next_after(chrono::Utc::now())
            .map_or_else(|| "never".to_owned(), time::fmt),
        accounts = config.accounts.len(),
        store = %config.store.path.display(),
        "Daemon started."
    );
    refresh_metrics(&config, &store).await;

    let failure = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            ended = async { listener_task.as_mut().expect("guarded").await }, if listener_task.is_some() => {
                listener_task = None;
                let why = listener_ended(ended);
                tracing::error!(error = %why, "The webhook listener stopped; exiting so that the service is restarted.");
                break Some(why);
            },
            ended = async { api_task.as_mut().expect("guarded").await }, if api_task.is_some() => {
                let why = crate::api::ended(ended);
                tracing::error!(error = format!("{why:#}"), "The HTTP API stopped; exiting so that the service is restarted.");
                break Some(why);
            },
            _ = hup.recv() => match Config::load(&config_path) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        tracing::warn!("{w}");
                    }
                    let new = loaded.config;
                    match Api::new(&new) {
                        Ok(a) => {
                            job.set(poll_sched(&new));
                            api = a;
                            config = new;
                            tracing::info!(schedule = config.schedule.poll.expr(), accounts = config.accounts.len(), "Config reloaded.");
                        }
                        Err(e) => tracing::error!(error = format!("{e:#}"), "Config reload failed; keeping the running config."),
                    }
                }
                // One event: every problem on one line, so the journal keeps them together.
                Err(e) => tracing::error!(
                    config = %e.path.display(),
                    problems = %e.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    "Config reload failed; keeping the running config."
                ),
            },
            Some(()) = tick_rx.recv() => {
                if work.is_some() {
                    tracing::warn!(schedule = config.schedule.poll.expr(), "Skipping a scheduled poll: the previous cycle is still running.");
                    continue;
                }
                let lock = match lock_for(&config.store.path, "poll") {
                    None => continue,
                    Some(Ok(l)) => l,
                    Some(Err(busy)) => {
                        tracing::warn!(holder = ?busy.holder, "Skipping a scheduled poll: another process holds the store lock.");
                        continue;
                    }
                };
                let now = Instant::now();
                let due: Vec<AccountConfig> = config
                    .accounts
                    .iter()
                    .filter(|a| match backoff.get(&a.name) {
                        Some(b) if b.until > now => {
                            tracing::info!(account = %a.name, failures = b.failures, retry_in_s = (b.until - now).as_secs(), "Account backing off after failures; skipped this tick.");
                            false
                        }
                        _ => true,
                    })
                    .cloned()
                    .collect();
                let (c, a, s) = (config.clone(), api.clone(), store.clone());
                let jitter = config.schedule.jitter;
                work = Some(tokio::spawn(async move {
                    let r = cycle(&c, &a, &s, &due, jitter).await;
                    drop(lock);
                    Done::Cycle(r)
                }));
            },
            _ = wake.notified() => {
                // Let a burst of deliveries settle, so each ticket is fetched once.
                let settle = config.webhook.as_ref().map_or(Duration::ZERO, |w| w.debounce);
                let at = tokio::time::Instant::now() + settle;
                webhook_at = Some(webhook_at.map_or(at, |t| t.min(at)));
            },
            _ = tokio::time::sleep_until(webhook_at.unwrap_or_else(tokio::time::Instant::now)), if work.is_none() && webhook_at.is_some() => {
                webhook_at = None;
                match lock_for(&config.store.path, "webhook") {
                    None => {}
                    // Another process works on the store: try again shortly.
                    Some(Err(_)) => webhook_at = Some(tokio::time::Instant::now() + Duration::from_secs(1)),
                    Some(Ok(lock)) => {
                        let (c, a, s) = (config.clone(), api.clone(), store.clone());
                        work = Some(tokio::spawn(async move {
                            let r = crate::webhook::process_pending(&c, &a, &s, time::now()).await;
                            drop(lock);
                            Done::Webhook(r)
                        }));
                    }
                }
            },
            _ = push_check.tick(), if work.is_none() => {
                if config.webhook.is_some() && webhook_at.is_none() && store.call(|s| s.due_event_count(&time::fmt(time::now()))).await.unwrap_or(0) > 0 {
                    webhook_at = Some(tokio::time::Instant::now());
                }
                let due = store.call(|s| s.next_due()).await.ok().flatten();
                if due.as_deref().and_then(time::parse).is_none_or(|d| d > time::now()) {
                    if Instant::now() >= next_purge {
                        next_purge = Instant::now() + Duration::from_secs(86_400);
                        if let Some(Ok(lock)) = lock_for(&config.store.path, "purge") {
                            let (c, s) = (config.clone(), store.clone());
                            work = Some(tokio::spawn(async move {
                                let r = s.call(move |st| st.purge_feed(crate::api::config::feed_retain_days(c.api.as_ref()), time::now()).and_then(|_| st.purge(&c.privacy, &c.retention, time::now(), false))).await;
                                drop(lock);
                                Done::Purge(r)
                            }));
                        }
                    }
                    continue;
                }
                if let Some(Ok(lock)) = lock_for(&config.store.path, "push") {
                    let (c, a, s) = (config.clone(), api.clone(), store.clone());
                    work = Some(tokio::spawn(async move {
                        let r = crate::push::push_pending(&c, &a, &s).await;
                        drop(lock);
                        Done::Push(r)
                    }));
                }
            },
            done = async { work.as_mut().expect("guarded").await }, if work.is_some() => {
                work = None;
                match done {
                    Ok(Done::Cycle(Ok(report))) => {
                        for r in &report.syncs {
                            match &r.error {
                                None => {
                                    backoff.remove(&r.account);
                                }
                                Some(_) => {
                                    let b = backoff.entry(r.account.clone()).or_insert(Backoff { failures: 0, until: Instant::now() });
                                    b.failures += 1;
                                    let wait = crate::backoff::Backoff::doubling(config.schedule.backoff_initial, config.schedule.backoff_max).delay(b.failures);
                                    b.until = Instant::now() + wait;
                                    tracing::warn!(account = %r.account, failures = b.failures, backoff_s = wait.as_secs(), "Account failed; backing off.");
                                }
                            }
                        }
                        crate::metrics::record_cycle(&report);
                    }
                    Ok(Done::Cycle(Err(e))) | Ok(Done::Push(Err(e))) => tracing::error!(error = format!("{e:#}"), "The store failed; the work will be tried again."),
                    Ok(Done::Push(Ok(_))) => {}
                    Ok(Done::Webhook(Ok(p))) => {
                        if p.fetched + p.skipped + p.ignored + p.failed > 0 {
                            tracing::info!(fetched = p.fetched, skipped = p.skipped, ignored = p.ignored, failed = p.failed, parked = p.parked, deferred = p.deferred, "Webhook events processed.");
                        }
                        if let Some(due) = p.next_due {
                            let wait = (due - time::now()).to_std().unwrap_or(Duration::ZERO);
                            let at = tokio::time::Instant::now() + wait;
                            webhook_at = Some(webhook_at.map_or(at, |t| t.min(at)));
                        }
                    }
                    Ok(Done::Webhook(Err(e))) => tracing::error!(error = format!("{e:#}"), "Webhook processing failed; the events stay pending."),
                    Ok(Done::Purge(Ok(p))) => tracing::info!(tickets = p.tickets_erased, rows = p.rows_deleted, "Daily purge done."),
                    Ok(Done::Purge(Err(e))) => tracing::error!(error = format!("{e:#}"), "The daily purge failed."),
                    Err(e) => tracing::error!(error = %e, "A background task ended abnormally."),
                }
                refresh_metrics(&config, &store).await;
            },
            _ = watchdog_tick.tick(), if watchdog => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            },
        }
    };

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("Stopping: no new work is started.");
    let _ = scheduler.shutdown().await;
    if let Some(t) = listener_task {
        t.abort();
    }
    if let Some(mut running) = work {
        let grace = config.service.shutdown_grace;
        match tokio::time::timeout(grace, &mut running).await {
            Ok(_) => tracing::info!("The running work finished."),
            Err(_) => {
                running.abort();
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "The running work did not finish within the grace period and was stopped; queued actions stay queued (in doubt ones are checked next time)."
                );
            }
        }
    }
    if let Some(why) = failure {
        return Err(why);
    }
    tracing::info!("Daemon stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Takes the store lock for a piece of `work` (`poll`, `push`, `webhook`, `purge`). `None` when
/// the lock file cannot even be opened (too many open files, say): that is logged and counted,
/// and the work is skipped until its next turn, never the end of the daemon.
fn lock_for(
    store: &std::path::Path,
    work: &'static str,
) -> Option<Result<StoreLock, crate::lock::Busy>> {
    match StoreLock::try_acquire(store) {
        Ok(r) => Some(r),
        Err(e) => {
            metrics::counter!("huoltosync_work_skipped_total", "work" => work).increment(1);
            tracing::error!(
                work,
                error = format!("{e:#}"),
                "Cannot take the store lock; this work is skipped and tried again later."
            );
            None
        }
    }
}

/// Why the webhook listener's task ended: it never should.
fn listener_ended(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("the webhook listener stopped"),
        Ok(Err(e)) => e.context("the webhook listener failed"),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            anyhow::anyhow!("the webhook listener panicked: {msg}")
        }
        Err(e) => anyhow::anyhow!("the webhook listener was cancelled: {e}"),
    }
}

/// The full poll's schedule: `[webhook] reconcile` when webhooks are on, else `[schedule] poll`.
fn poll_schedule(config: &Config) -> &str {
    poll_sched(config).expr()
}

fn poll_sched(config: &Config) -> &Schedule {
    config
        .webhook
        .as_ref()
        .map_or(&config.schedule.poll, |w| &w.reconcile)
}

/// Whether some account has no successful sync within the poll schedule's longest interval
/// (or the store cannot say): then the daemon polls at start-up.
async fn stale_at_start(config: &Config, store: &Handle) -> bool {
    let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let now = time::now();
    let interval = poll_sched(config).longest_gap(now);
    match store
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

/// The poll job in the scheduler. tokio-cron-scheduler freezes a job's UTC offset when the job
/// is created, so the job is created at the offset in force in the schedule's zone and a keeper
/// task creates it again whenever that offset changes (daylight saving), or the schedule does
/// (a reload). Between changes the scheduler then fires where [`Schedule::next_after`] says.
struct PollJob {
    schedule: tokio::sync::watch::Sender<Schedule>,
}

impl PollJob {
    /// Adds the job; its keeper runs until the `PollJob` is dropped, then removes it.
    async fn start(
        scheduler: &JobScheduler,
        schedule: &Schedule,
        tx: mpsc::UnboundedSender<()>,
    ) -> anyhow::Result<PollJob> {
        let (offset, id) =
            add_poll_job(scheduler, schedule, chrono::Utc::now(), tx.clone()).await?;
        let (set, get) = tokio::sync::watch::channel(schedule.clone());
        tokio::spawn(keep_poll_job(scheduler.clone(), get, tx, offset, Some(id)));
        Ok(PollJob { schedule: set })
    }

    /// Puts a reloaded schedule in force (nothing happens if it is the same).
    fn set(&self, schedule: &Schedule) {
        self.schedule.send_if_modified(|s| {
            let changed = s != schedule;
            if changed {
                *s = schedule.clone();
            }
            changed
        });
    }
}

/// The keeper of [`PollJob`]: wakes at the next offset change (at least hourly, so that a
/// wall-clock jump is noticed) or on a new schedule, and creates the job again when its offset
/// or schedule is no longer the one in force. A job that cannot be replaced is logged and
/// tried again at the next wake-up.
async fn keep_poll_job(
    scheduler: JobScheduler,
    mut schedule: tokio::sync::watch::Receiver<Schedule>,
    tx: mpsc::UnboundedSender<()>,
    mut offset: chrono::FixedOffset,
    mut id: Option<uuid::Uuid>,
) {
    // A reload or an offset change not yet applied (the scheduler refused).
    let mut pending = false;
    loop {
        let now = chrono::Utc::now();
        let zone = schedule.borrow().zone();
        let wait = crate::schedule::until_offset_change(zone, now, Duration::from_secs(3600));
        let reloaded = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            changed = schedule.changed() => match changed {
                Ok(()) => true,
                // The daemon is ending.
                Err(_) => break,
            },
        };
        let now = chrono::Utc::now();
        let current = schedule.borrow_and_update().clone();
        pending |= reloaded || crate::schedule::offset_at(current.zone(), now) != offset;
        if !pending && id.is_some() {
            continue;
        }
        if let Some(old) = id.take()
            && let Err(e) = scheduler.remove(&old).await
        {
            tracing::error!(error = %e, "Could not remove the poll job; keeping it.");
            id = Some(old);
            continue;
        }
        match add_poll_job(&scheduler, &current, now, tx.clone()).await {
            Ok((o, new)) => {
                (offset, id, pending) = (o, Some(new), false);
                tracing::info!(schedule = current.expr(), zone = %current.zone(), offset = %o, "Poll job set.");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                schedule = current.expr(),
                "Could not set the poll job; trying again within the hour."
            ),
        }
    }
    if let Some(id) = id {
        let _ = scheduler.remove(&id).await;
    }
}

/// Adds a job that sends a tick on `schedule`, at the offset in force at `now`.
async fn add_poll_job(
    scheduler: &JobScheduler,
    schedule: &Schedule,
    now: chrono::DateTime<chrono::Utc>,
    tx: mpsc::UnboundedSender<()>,
) -> anyhow::Result<(chrono::FixedOffset, uuid::Uuid)> {
    let offset = crate::schedule::offset_at(schedule.zone(), now);
    let job = Job::new_async_tz(schedule.expr(), offset, move |_id, _sched| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(());
        })
    })?;
    Ok((offset, scheduler.add(job).await?))
}

async fn refresh_metrics(config: &Config, store: &Handle) {
    if config.service.metrics_listen.is_none() {
        return;
    }
    let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let now = time::now();
    match store
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

/// `run --once`: takes the lock (waiting up to `wait`), runs one cycle over all accounts.
/// `Err(Busy)` when another process holds the lock.
pub async fn run_once(
    config: &Config,
    wait: Duration,
) -> anyhow::Result<Result<CycleReport, crate::lock::Busy>> {
    let _lock = match StoreLock::acquire(&config.store.path, wait).await? {
        Ok(l) => l,
        Err(busy) => return Ok(Err(busy)),
    };
    let api = Api::new(config)?;
    let store = Handle::open(config.store.path.clone()).await?;
    Ok(Ok(cycle(
        config,
        &api,
        &store,
        &config.accounts,
        Duration::ZERO,
    )
    .await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_that_ends_in_any_way_is_a_reason_to_exit() {
        let panicked = tokio::spawn(async { panic!("boom") })
            .await
            .map(|()| Ok(()));
        assert_eq!(
            listener_ended(panicked).to_string(),
            "the webhook listener panicked: boom"
        );
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("accept: EINVAL"));
        assert_eq!(
            format!("{:#}", listener_ended(Ok(failed))),
            "the webhook listener failed: accept: EINVAL"
        );
        assert_eq!(
            listener_ended(Ok(Ok(()))).to_string(),
            "the webhook listener stopped"
        );
    }
}
