//! The service shell: one cycle (push, poll, push) as `run --once` and the daemon run it
//! ([`cycle()`]), the daemon's event loop ([`daemon`]), and [`run`], which starts that loop for
//! `huoltosync run` with the production sources of its events. Beside them: the runtime that
//! owns the running parts across reloads ([`runtime`]), cron schedules ([`schedule`]), the store
//! lock ([`lock`]), the purge's retention values ([`retention`]), Prometheus metrics
//! ([`metrics`]) and logging ([`telemetry`]).
//!
//! The daemon polls at start-up when an account's last successful sync is older than one
//! interval (a restart loop does not spend billed calls on a fresh mirror), then on
//! `[schedule] poll`, in `[schedule] timezone`, with tokio-cron-scheduler (whose job is created
//! again at each daylight-saving change, see `PollJob`). The scheduler's job only sends a tick
//! to the daemon's loop; the loop decides. Work (a cycle, a push, a purge, webhook processing)
//! runs one at a time under the store lock ([`crate::service::lock`]): a tick that comes while work is
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
pub mod lock;
pub mod metrics;
pub mod retention;
pub mod runtime;
pub mod schedule;
pub mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

pub use cycle::{CycleReport, cycle};

use crate::config::Config;
use crate::service::lock::StoreLock;
use crate::service::schedule::Schedule;
use crate::store::Handle;
use crate::tampuuri::Api;
use runtime::Runtime;

/// `huoltosync run`: the daemon, with the cron scheduler as its tick source, signals as its
/// reload and shutdown, and the listeners beside it, until SIGTERM or SIGINT. Every running part
/// follows the runtime's config ([`runtime`]), so that a reload reaches it. An error (exit 1)
/// when it cannot start or when a listener ends.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<ExitCode> {
    let api = Api::new(&config)?;
    let store = Handle::open(config.store.path.clone()).await?;
    if let Some(addr) = config.service.metrics_listen {
        crate::service::metrics::install(addr)?;
    }
    let runtime = Runtime::new(config, api, store.clone());
    // Subscribers are registered before the first poll, so a new one gets every event after
    // the daemon started; each has its own delivery task, and a reload adds, changes and removes
    // them.
    let _outgoing =
        crate::faces::outgoing::follow(runtime.watch(), runtime.exchange().clone(), store.clone())
            .await?;
    // Webhooks: the listener records deliveries and wakes the loop.
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = listeners(&runtime, wake.clone()).await?;
    let mut scheduler = JobScheduler::new().await?;
    let (tick_tx, ticks) = mpsc::unbounded_channel::<()>();
    PollJob::start(&scheduler, "Poll", runtime.watch(), poll_job, tick_tx).await?;
    // `[slotti] reconcile` sends its own ticks, on the schedule in force (none without
    // `[slotti]`).
    let (slotti_tx, slotti_ticks) = mpsc::unbounded_channel::<()>();
    PollJob::start(
        &scheduler,
        "Slotti reconcile",
        runtime.watch(),
        slotti_job,
        slotti_tx,
    )
    .await?;
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
        runtime,
        ticks,
        slotti_ticks,
        reload,
        wake,
        listener,
        watchdog,
        now: crate::domain::time::now,
        happened: None,
    };
    let ended = daemon::run(deps, shutdown).await;
    hups.abort();
    let _ = scheduler.shutdown().await;
    ended.map(|()| ExitCode::SUCCESS)
}

/// The poll job's schedule: the full poll's.
fn poll_job(config: &Config) -> Option<&Schedule> {
    Some(daemon::poll_schedule(config))
}

/// The `[slotti] reconcile` job's schedule, with `[slotti]`.
fn slotti_job(config: &Config) -> Option<&Schedule> {
    config.slotti.as_ref().map(|s| &s.reconcile)
}

/// How a listener's task's end is described.
type Describe = fn(Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error;

/// Binds and starts the listeners beside the loop (the webhook listener, the HTTP API), as one
/// task. Before the stop they never should end: the task then ends with the reason (the daemon
/// exits 1). At the stop (the runtime's token) each drains, and the task ends once both did.
async fn listeners(
    runtime: &Runtime,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let config = runtime.config();
    let stop = runtime.stop_token().clone();
    let mut tasks: Vec<(tokio::task::JoinHandle<anyhow::Result<()>>, Describe)> = Vec::new();
    if let Some(w) = &config.webhook {
        let listener = tokio::net::TcpListener::bind(w.listen)
            .await
            .map_err(|e| anyhow::anyhow!("[webhook] listen = {}: cannot listen: {e}", w.listen))?;
        tracing::info!(addr = %w.listen, path = %w.path, reconcile = w.reconcile.expr(), "Webhook listener started; polling becomes reconciliation.");
        let task = tokio::spawn(crate::faces::webhook::serve_following(
            listener,
            runtime.watch(),
            runtime.store().clone(),
            wake,
            stop.clone().cancelled_owned(),
        ));
        tasks.push((task, listener_ended));
    }
    // The HTTP API, when configured, is served on its own store connections and follows the
    // config (its tokens, the board's users).
    if let Some(api) = crate::faces::api::spawn_following(
        runtime.watch(),
        stop.clone(),
        runtime.exchange().clone(),
    )
    .await?
    {
        tasks.push((api, crate::faces::api::ended));
    }
    if tasks.is_empty() {
        return Ok(None);
    }
    Ok(Some(tokio::spawn(async move {
        use futures::StreamExt;
        let mut running: futures::stream::FuturesUnordered<_> = tasks
            .into_iter()
            .map(|(task, describe)| async move { (describe, task.await) })
            .collect();
        while let Some((describe, ended)) = running.next().await {
            let drained = stop.is_cancelled() && matches!(ended, Ok(Ok(())));
            if !drained {
                return Err(Described::from(describe(ended)).into());
            }
        }
        Ok(())
    })))
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

/// A job in the scheduler that sends a tick on a schedule picked from the config in force (the
/// poll's, `[slotti] reconcile`). tokio-cron-scheduler freezes a job's UTC offset when the job
/// is created, so the job is created at the offset in force in the schedule's zone and a keeper
/// task creates it again whenever that offset changes (daylight saving), or a reload changes the
/// schedule (or adds or removes it). Between changes the scheduler then fires where
/// [`Schedule::next_after`] says. The keeper ends, removing the job, when the runtime does.
struct PollJob;

/// Which schedule of the config a job follows (`None`: no job).
type Pick = fn(&Config) -> Option<&Schedule>;

impl PollJob {
    /// Adds the job (when the config in force has its schedule) and its keeper.
    async fn start(
        scheduler: &JobScheduler,
        what: &'static str,
        mut config: tokio::sync::watch::Receiver<Arc<Config>>,
        pick: Pick,
        tx: mpsc::UnboundedSender<()>,
    ) -> anyhow::Result<()> {
        let schedule = pick(&config.borrow_and_update()).cloned();
        let job = match &schedule {
            Some(s) => Some(add_poll_job(scheduler, s, chrono::Utc::now(), tx.clone()).await?),
            None => None,
        };
        let keeper = Keeper {
            scheduler: scheduler.clone(),
            what,
            pick,
            tx,
        };
        tokio::spawn(keeper.keep(config, schedule, job));
        Ok(())
    }
}

struct Keeper {
    scheduler: JobScheduler,
    what: &'static str,
    pick: Pick,
    tx: mpsc::UnboundedSender<()>,
}

impl Keeper {
    /// Wakes at the next offset change (at least hourly, so that a wall-clock jump is noticed)
    /// or on a reload, and creates the job again when its offset or schedule is no longer the
    /// one in force. A job that cannot be replaced is logged and tried again at the next
    /// wake-up.
    async fn keep(
        self,
        mut config: tokio::sync::watch::Receiver<Arc<Config>>,
        mut schedule: Option<Schedule>,
        mut job: Option<(chrono::FixedOffset, uuid::Uuid)>,
    ) {
        // A change not yet applied (the scheduler refused).
        let mut pending = false;
        loop {
            let hour = Duration::from_secs(3600);
            let wait = schedule.as_ref().map_or(hour, |s| {
                crate::service::schedule::until_offset_change(s.zone(), chrono::Utc::now(), hour)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {},
                changed = config.changed() => if changed.is_err() {
                    // The daemon is ending.
                    break;
                },
            }
            let now = chrono::Utc::now();
            let wanted = (self.pick)(&config.borrow_and_update()).cloned();
            let moved = |s: &Schedule, o: chrono::FixedOffset| {
                crate::service::schedule::offset_at(s.zone(), now) != o
            };
            pending |= wanted != schedule
                || match (&wanted, &job) {
                    (Some(s), Some((o, _))) => moved(s, *o),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
            if !pending {
                continue;
            }
            if let Some((o, old)) = job.take()
                && let Err(e) = self.scheduler.remove(&old).await
            {
                tracing::error!(job = self.what, error = %e, "Could not remove a job; keeping it.");
                job = Some((o, old));
                continue;
            }
            schedule = wanted;
            let Some(current) = &schedule else {
                pending = false;
                tracing::info!(job = self.what, "{} job removed.", self.what);
                continue;
            };
            match add_poll_job(&self.scheduler, current, now, self.tx.clone()).await {
                Ok((o, new)) => {
                    (job, pending) = (Some((o, new)), false);
                    tracing::info!(schedule = current.expr(), zone = %current.zone(), offset = %o, "{} job set.", self.what);
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    schedule = current.expr(),
                    "Could not set the {} job; trying again within the hour.",
                    self.what
                ),
            }
        }
        if let Some((_, id)) = job {
            let _ = self.scheduler.remove(&id).await;
        }
    }
}

/// Adds a job that sends a tick on `schedule`, at the offset in force at `now`.
async fn add_poll_job(
    scheduler: &JobScheduler,
    schedule: &Schedule,
    now: chrono::DateTime<chrono::Utc>,
    tx: mpsc::UnboundedSender<()>,
) -> anyhow::Result<(chrono::FixedOffset, uuid::Uuid)> {
    let offset = crate::service::schedule::offset_at(schedule.zone(), now);
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
) -> anyhow::Result<Result<CycleReport, crate::service::lock::Busy>> {
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
