//! The service shell: one cycle (push, poll, push) as `run --once` and the daemon run it
//! ([`cycle()`]), the daemon's event loop ([`daemon`]), and [`run`], which starts that loop for
//! `huoltosync run` with the production sources of its events.
//!
//! The daemon polls at start-up when an account's last successful sync is older than one
//! interval (a restart loop does not spend billed calls on a fresh mirror), then on
//! `[schedule] poll`, in `[schedule] timezone`, with tokio-cron-scheduler (whose job is created
//! again at each daylight-saving change, see `PollJob`). The scheduler's job only sends a tick
//! to the daemon's loop; the loop decides. Work (a cycle, a push, a purge, webhook processing)
//! runs one at a time under the store lock ([`crate::lock`]): a tick that comes while work is
//! running, or while another process (a `run --once`) holds the lock, is skipped and logged,
//! never overlapped. Between cycles the loop looks for queued actions every `[service]
//! push_check_ms` and pushes them. A failing account is skipped for a backoff that doubles up
//! to a cap and resets on success; so is failing work. SIGHUP reloads the config (an invalid
//! one is logged and the old one kept); SIGTERM or SIGINT stops taking work, lets running work
//! finish within `[service] shutdown_grace_secs`, and exits 0. Under systemd (`Type=notify`)
//! it reports READY, STOPPING and the watchdog.
//!
//! A piece of work that cannot start (say the lock file cannot be opened because the process
//! ran out of file descriptors) is skipped, logged and counted
//! (`huoltosync_work_skipped_total`); the next tick tries again. With `[webhook]`, the listener
//! runs beside the loop; if it ever ends, the daemon exits 1 so that systemd restarts it, rather
//! than running on deaf. Deliveries wake the loop; a ticket's events are processed once its
//! deliveries settle (`[webhook] debounce_ms`, at most `debounce_max_ms` after the first).
//! With `[slotti]`, a second cron job sends `[slotti] reconcile` ticks: Slotti's
//! reconciliation runs in the work slot like a poll (`daemon::Work::Reconcile`).

pub mod cycle;
pub mod daemon;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

pub use cycle::{CycleReport, cycle};

use crate::config::Config;
use crate::lock::StoreLock;
use crate::schedule::Schedule;
use crate::store::Handle;
use crate::tampuuri::Api;

/// `huoltosync run`: the daemon, with the cron scheduler as its tick source, signals as its
/// reload and shutdown, and the webhook listener beside it, until SIGTERM or SIGINT. An error
/// (exit 1) when it cannot start or when the webhook listener ends.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<ExitCode> {
    let api = Api::new(&config)?;
    let store = Handle::open(config.store.path.clone()).await?;
    if let Some(addr) = config.service.metrics_listen {
        crate::metrics::install(addr)?;
    }
    // Subscribers are registered before the first poll, so a new one gets every event after
    // the daemon started; each has its own delivery task.
    let _outgoing = crate::outgoing::spawn(&config, api.exchange(), store.clone()).await?;
    // Webhooks: the listener records deliveries and wakes the loop.
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = match &config.webhook {
        Some(w) => {
            let listener = tokio::net::TcpListener::bind(w.listen).await.map_err(|e| {
                anyhow::anyhow!("[webhook] listen = {}: cannot listen: {e}", w.listen)
            })?;
            tracing::info!(addr = %w.listen, path = %w.path, reconcile = w.reconcile.expr(), "Webhook listener started; polling becomes reconciliation.");
            Some(tokio::spawn(crate::webhook::serve_with_slotti(
                listener,
                w.clone(),
                config.slotti.as_ref().map(|s| s.webhook.clone()),
                store.clone(),
                wake.clone(),
                std::future::pending(),
            )))
        }
        None => None,
    };
    // The HTTP API, when configured, is served beside the loop on its own store connections.
    // Like the webhook listener, it never should end: if either does, the daemon exits 1.
    let listener = match (listener, crate::api::spawn(&config).await?) {
        (l, None) => l,
        (None, Some(api)) => Some(tokio::spawn(async move {
            Err(Described::from(crate::api::ended(api.await)).into())
        })),
        (Some(webhook), Some(api)) => Some(tokio::spawn(async move {
            tokio::select! {
                r = webhook => Err(Described::from(listener_ended(r)).into()),
                r = api => Err(Described::from(crate::api::ended(r)).into()),
            }
        })),
    };
    let (tick_tx, ticks) = mpsc::unbounded_channel::<()>();
    let mut scheduler = JobScheduler::new().await?;
    let job = PollJob::start(&scheduler, daemon::poll_schedule(&config), tick_tx).await?;
    // `[slotti] reconcile` sends its own ticks; its schedule is the one read at start-up (a
    // reload that changes it takes effect at the next start).
    let (slotti_tx, slotti_ticks) = mpsc::unbounded_channel::<()>();
    let _slotti_job = match &config.slotti {
        Some(s) => Some(PollJob::start(&scheduler, &s.reconcile, slotti_tx).await?),
        None => None,
    };
    scheduler.start().await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (reload_tx, reload) = mpsc::unbounded_channel::<()>();
    let hups = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if reload_tx.send(()).is_err() {
                break;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
        .then(|| Duration::from_micros(watchdog_usec.max(2_000_000) / 2));
    let deps = daemon::Deps {
        config_path,
        config,
        api,
        store,
        ticks,
        slotti_ticks,
        schedule: job.schedule,
        reload,
        wake,
        listener,
        watchdog,
        now: crate::time::now,
        happened: None,
    };
    let ended = daemon::run(deps, shutdown).await;
    hups.abort();
    let _ = scheduler.shutdown().await;
    ended.map(|()| ExitCode::SUCCESS)
}

/// A listener's end, already described (by the task that serves the webhook listener and the
/// HTTP API together).
#[derive(Debug)]
struct Described(String);

impl From<anyhow::Error> for Described {
    fn from(e: anyhow::Error) -> Self {
        Described(format!("{e:#}"))
    }
}

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Described {}

/// Why the webhook listener's task (or the HTTP API's, served beside it) ended: it never should.
fn listener_ended(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("the webhook listener stopped"),
        // Already described by the task that served both the webhook listener and the API.
        Ok(Err(e)) if e.downcast_ref::<Described>().is_some() => e,
        Ok(Err(e)) => e.context("the webhook listener failed"),
        Err(e) if e.is_panic() => anyhow::anyhow!(
            "the webhook listener panicked: {}",
            daemon::panic_message(e.into_panic())
        ),
        Err(e) => anyhow::anyhow!("the webhook listener was cancelled: {e}"),
    }
}

/// The poll job in the scheduler. tokio-cron-scheduler freezes a job's UTC offset when the job
/// is created, so the job is created at the offset in force in the schedule's zone and a keeper
/// task creates it again whenever that offset changes (daylight saving), or the schedule does
/// (a reload). Between changes the scheduler then fires where [`Schedule::next_after`] says.
struct PollJob {
    /// The schedule in force: the daemon sends a reloaded one here. Dropping it ends the
    /// keeper, which then removes the job.
    schedule: tokio::sync::watch::Sender<Schedule>,
}

impl PollJob {
    /// Adds the job and its keeper.
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
    Ok(Ok(cycle::once(config, &api, &store).await?))
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
