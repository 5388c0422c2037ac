//! The command line: every subcommand's arguments, and what it prints.
//!
//! Logs and progress go to stderr; stdout carries only the command's output, so `--json`
//! output can be piped. Exit codes: 0 success, 1 a failure at run time (an account that did not
//! sync, a check that found problems), 2 bad usage ([`Usage`]) or an invalid config.
//!
//! Only the commands that call Tampuuri (`run`, `task … --now`, `check-config`) read its
//! secrets; the others load the config without them, so staff and monitoring can run them
//! without access to the credentials.
//!
//! Output goes through `out!` and `outln!` (defined in `lib.rs`, shared with the demo), which
//! return an error instead of panicking: a closed pipe (`huoltosync tasks | head`) ends the
//! command quietly with exit 0, as ripgrep does.

use std::process::ExitCode;

#[cfg(feature = "sim")]
use anyhow::Context;
#[cfg(feature = "sim")]
use clap::Args;

pub mod args;
#[cfg(feature = "sim")]
pub mod demo;
pub mod report;
// For `args.rs`, which takes them from its parent (see there).
pub use crate::config::DEFAULT_CONFIG_PATH;
pub use crate::service::telemetry::LogFormat;
pub mod board;
mod online;
pub mod slotti;
pub mod subscribers;
pub mod task;
pub mod visits;

use crate::cli::report::count;
/// [`crate::domain::escape`], under the path the commands have always used.
pub use crate::domain::escape;
use crate::domain::escape::esc;

use crate::config::Config;
use crate::domain::time;
use crate::engine::sync::SyncReport;
use crate::store::{Store, TicketFilter};
pub use args::{CheckArgs, Cli, Command, CostArgs, JsonArg, PurgeArgs, RunArgs, TasksArgs};

#[cfg(feature = "sim")]
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Where to listen (loopback only); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Open tickets for contractor 4711 in each account (plus about a quarter as many noise tickets).
    #[arg(long, default_value_t = 20)]
    pub tickets: u64,
    /// Accounts sim-1 … sim-K.
    #[arg(long, default_value_t = 1)]
    pub accounts: u32,
    /// Seed for the generated tickets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latency added to every API call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Deliver webhook notifications (every ticket created or changing state) to this URL.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Sign deliveries with HMAC-SHA256 of the body under this secret (`sha256=<hex>`).
    #[arg(long, value_name = "SECRET", requires = "webhook_url")]
    pub webhook_secret: Option<String>,
    /// The header carrying the digest.
    #[arg(long, value_name = "NAME", default_value = "X-Huoltosync-Digest")]
    pub webhook_header: String,
    /// HTTP Basic credentials for deliveries, `USER:PASSWORD`.
    #[arg(long, value_name = "USER:PASSWORD", requires = "webhook_url")]
    pub webhook_basic: Option<String>,
    /// The share of deliveries dropped entirely (0 to 1).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub webhook_drop_rate: f64,
    /// Also serve Slotti's booking and Slotti APIs under /slotti/ (prints `slotti on URL`).
    #[arg(long)]
    pub slotti: bool,
}

/// Bad usage found after parsing (an unknown account or state, a missing `--reason`, an invalid
/// month, the wrong user): exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A [`Usage`] error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// Runs the parsed command line on a new runtime.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): nothing more to say, nothing failed.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<crate::config::ConfigError>().is_some()
                || e.downcast_ref::<Usage>().is_some()
            {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            // Error texts may quote a server's answer or a ticket's text.
            eprintln!("error: {}", esc(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Whether an error is (caused by) writing to a closed pipe.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = &cli.config;
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Sim(args) => sim(args).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => crate::cli::demo::run(args).await,
        Command::CheckConfig(args) => check_config(path, args).await,
        Command::Run(args) => {
            let config = load(path)?;
            if args.once {
                run_once(&config, std::time::Duration::from_secs(args.wait)).await
            } else {
                crate::service::run(path.clone(), config).await
            }
        }
        Command::Task(args) if args.pushes_now() => task::task(&load(path)?, args).await,
        Command::Task(args) => task::task(&load_without_secrets(path)?, args).await,
        Command::Cost(args) => cost(&load_without_secrets(path)?, args).await,
        Command::Purge(args) => purge(&load_without_secrets(path)?, args).await,
        Command::Tasks(args) => tasks(&load_without_secrets(path)?, args).await,
        Command::Outbox(args) => task::outbox(&load_without_secrets(path)?, args).await,
        Command::Status(args) => status(&load_without_secrets(path)?, args.json).await,
        Command::Subscribers(args) => {
            subscribers::subscribers(&load_without_secrets(path)?, args).await
        }
        Command::Serve => {
            let config = load_without_secrets(path)?;
            if config.api.as_ref().is_none_or(|a| a.listen.is_none()) {
                return Err(usage(format!(
                    "{} has no [api] listen: set it (and [[api.tokens]]) to serve the API",
                    config.source.display()
                )));
            }
            // The daemon creates the store; serving alone never does (an empty one would answer
            // every request with nothing, from the wrong file).
            if !config.store.path.exists() {
                return Err(usage(format!(
                    "no store at {} ([store] path): run `huoltosync run --once` first to create and fill it; `huoltosync serve` does not create one",
                    config.store.path.display()
                )));
            }
            crate::faces::api::serve_alone(config).await
        }
        Command::Visits(args) => {
            let config = load_without_secrets(path)?;
            let tz = visits::zone(&config);
            visits::visits(&config, args, tz).await
        }
        Command::Slotti(args) => slotti::slotti(&load(path)?, args).await,
        Command::Board(args) if board::needs_config(&args) => {
            board::login_link(&load_without_secrets(path)?, args).await
        }
        Command::Board(args) => board::passwd(args),
        Command::Openapi => {
            out!("{}", crate::faces::api::openapi())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the config with its secrets (for the commands that call Tampuuri), logging its
/// warnings; refuses root on a store that belongs to another user.
pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    checked(path, Config::load(path)?)
}

/// Loads the config without reading its secrets (for the commands that do not call Tampuuri).
fn load_without_secrets(path: &std::path::Path) -> anyhow::Result<Config> {
    checked(path, Config::load_without_secrets(path)?)
}

fn checked(path: &std::path::Path, loaded: crate::config::Loaded) -> anyhow::Result<Config> {
    for w in &loaded.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    for e in &loaded.account_errors {
        tracing::error!(config = %path.display(), "{e}; this account fails, the others run");
    }
    refuse_root_on_a_foreign_store(&loaded.config.store.path)?;
    Ok(loaded.config)
}

/// Root must not work on a store that belongs to another user (the service's): the lock file,
/// the `-wal` and `-shm` files or a migration's copy it created would belong to root, and the
/// service would then fail with "Permission denied". Names the user to run as instead.
pub fn refuse_root_on_a_foreign_store(store: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let folder = store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    for p in [store, folder] {
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        if meta.uid() == 0 {
            continue;
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {}", meta.uid()), |u| u.name);
        return Err(usage(format!(
            "{} belongs to the user {user}: run this command as {user} (`runuser -u {user} -- huoltosync …`), not as root, whose files there would lock the service out",
            p.display()
        )));
    }
    Ok(())
}

/// `run --once`: one cycle under the store lock, waiting up to `wait` for it. Prints one line per
/// account and what the pushes did; exit 0 only if every account synced and no action was
/// dead-lettered; 75 when another process holds the lock.
pub async fn run_once(config: &Config, wait: std::time::Duration) -> anyhow::Result<ExitCode> {
    let report = match crate::service::run_once(config, wait).await? {
        Ok(r) => r,
        Err(busy) => {
            eprintln!("error: {busy}");
            return Ok(ExitCode::from(crate::service::lock::EXIT_BUSY));
        }
    };
    for r in &report.syncs {
        outln!("{}", summary_line(r))?;
    }
    if let Some(s) = &report.slotti {
        outln!("{}", slotti::run_line(s))?;
    }
    task::print_push(&report.push)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `sim-1: ok: 1001 open (1001 new, 0 changed, 0 left), 5 pages, 5 API calls, 0.4 s`: the
/// line `run --once` prints for an account (see [`SyncReport`]'s `Display`).
pub fn summary_line(r: &SyncReport) -> String {
    r.to_string()
}

/// Opens the store for a command that only reads it: a missing store is an error, not created.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.store.path.clone();
    tokio::task::spawn_blocking(move || Store::open_existing(&path)).await?
}

async fn tasks(config: &Config, args: TasksArgs) -> anyhow::Result<ExitCode> {
    if let Some(a) = &args.account
        && config.account(a).is_none()
    {
        return Err(usage(format!(
            "--account {a:?} is not in the config (accounts: {})",
            account_names(config).join(", ")
        )));
    }
    let state = args
        .state
        .as_deref()
        .map(|s| known_state(config, s))
        .transpose()?;
    let mut store = open_store(config).await?;
    let rows = store.mirror().tickets(&TicketFilter {
        account: args.account,
        state,
        all: args.all,
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = visits::zone(config);
    for r in &rows {
        outln!(
            "{:<12} {:>8}  {:<13} {}{}{}{}",
            esc(&r.account),
            r.id,
            esc(&r.state),
            esc(r.title.as_deref().unwrap_or("-")),
            r.pending_state
                .as_deref()
                .map(|p| format!("  (→ {} pending)", esc(p)))
                .unwrap_or_default(),
            r.next_visit
                .as_ref()
                .and_then(|v| Some((time::parse(&v.start)?, time::parse(&v.end)?)))
                .map(|(s, e)| format!(
                    "  (visit {})",
                    crate::engine::visits::message::describe(s, e, tz)
                ))
                .unwrap_or_default(),
            if r.open {
                String::new()
            } else {
                format!("  (left {})", esc(r.left_at.as_deref().unwrap_or("?")))
            }
        )?;
    }
    eprintln!("{}", count(rows.len() as u64, "ticket", "tickets"));
    Ok(ExitCode::SUCCESS)
}

/// A `--state` value: one of Tampuuri's five states, or a state an account's `states` names.
fn known_state(config: &Config, given: &str) -> anyhow::Result<String> {
    let mut names: Vec<String> = crate::domain::model::TicketState::KNOWN
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    for a in &config.accounts {
        for s in &a.states {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    names
        .iter()
        .find(|n| n.eq_ignore_ascii_case(given.trim()))
        .cloned()
        .ok_or_else(|| {
            usage(format!(
                "--state {given:?} is not a ticket state (states: {})",
                names.join(", ")
            ))
        })
}

fn account_names(config: &Config) -> Vec<String> {
    config.accounts.iter().map(|a| a.name.clone()).collect()
}

/// `status`: exits 1 when an account's last success is older than `[service] stale_after_secs`
/// (default 3 × the poll interval) or never happened, or dead letters exist, or an outgoing
/// event subscriber is dead.
async fn status(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let mut store = open_store(config).await?;
    let now = time::now();
    let st =
        crate::engine::status::status(config, &mut store, now).map_err(|e| store.explain(e))?;
    let (shown, webhooks, subscribers) = (&st.accounts, &st.webhooks, &st.subscribers);
    let healthy = st.healthy();
    let code = if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&st.to_json())?)?;
        return Ok(code);
    }
    if let Some(w) = &webhooks {
        outln!(
            "webhooks: {} deliveries received; events: {} relevant (fetched), {} irrelevant (other contractors'), {} ignored, {} pending, {} parked (fetch failed; the next reconciliation covers them), {} reconciled; {} tickets fetched",
            w.deliveries_received,
            w.events_relevant,
            w.events_irrelevant,
            w.events_ignored,
            w.events_pending,
            w.events_parked,
            w.events_reconciled,
            w.fetches
        )?;
    }
    for s in subscribers.iter().flatten() {
        outln!("{}", subscribers::line(s))?;
    }
    if let Some(c) = &st.slotti {
        outln!("{}", slotti::status_line(&c.calls))?;
        outln!("{}", slotti::sync_line(c, now))?;
    }
    for sh in shown {
        let s = &sh.status;
        let success = match s.last_success.as_deref().and_then(time::parse) {
            Some(t) => format!("{} ({} ago)", time::fmt(t), time::age(now - t)),
            None => "never".into(),
        };
        outln!(
            "{}: {}",
            s.account,
            if sh.problems.is_empty() {
                "OK".to_owned()
            } else {
                format!("PROBLEM: {}", sh.problems.join("; "))
            }
        )?;
        outln!("  last successful sync: {success}")?;
        match &s.last_run {
            Some(r) if r.outcome != "ok" => outln!(
                "  last run: {} at {}: {}",
                esc(&r.outcome),
                esc(&r.started_at),
                esc(r.error.as_deref().unwrap_or("-"))
            )?,
            _ => {}
        }
        outln!("  open tickets mirrored: {}", s.open_tickets)?;
        if let Some(found) = s.last_reconcile_found {
            outln!(
                "  last reconciliation found {found} ticket(s) new or changed that no webhook had brought (missed deliveries)"
            )?;
        }
        outln!(
            "  API calls: {} today, {} this month",
            s.calls_today,
            s.calls_this_month
        )?;
        outln!(
            "  outbox: {} pending, {} dead-lettered{}",
            s.outbox_pending,
            s.dead_letters,
            if s.dead_letters > 0 {
                " (see `huoltosync outbox --failed`)"
            } else {
                ""
            }
        )?;
    }
    Ok(code)
}

async fn check_config(path: &std::path::Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let loaded = match Config::load(path) {
        Ok(l) => l,
        Err(e) => {
            outln!(
                "{} is invalid: {} problem(s)",
                e.path.display(),
                e.errors.len()
            )?;
            for issue in &e.errors {
                outln!("  error: {issue}")?;
            }
            return Ok(ExitCode::from(2));
        }
    };
    for w in &loaded.warnings {
        outln!("  warning: {w}")?;
    }
    if !loaded.account_errors.is_empty() {
        outln!(
            "{} is invalid: {} problem(s)",
            path.display(),
            loaded.account_errors.len()
        )?;
        for issue in &loaded.account_errors {
            outln!("  error: {issue}")?;
        }
        return Ok(ExitCode::from(2));
    }
    let config = loaded.config;
    outln!(
        "{} is valid: {} account(s): {}",
        path.display(),
        config.accounts.len(),
        account_names(&config).join(", ")
    )?;
    if let Some(s) = &config.slotti {
        outln!("{}", slotti::config_line(s))?;
    }
    if !args.online {
        return Ok(ExitCode::SUCCESS);
    }
    let mut ok = online::report(&config).await?;
    if config.slotti.is_some() {
        ok &= slotti::online(&config).await?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "sim")]
async fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let sim = crate::sim::Sim::new(&crate::sim::SimOptions {
        tickets: args.tickets,
        accounts: args.accounts,
        seed: args.seed,
        latency_ms: args.latency_ms,
        webhook: match &args.webhook_url {
            None => None,
            Some(url) => {
                let basic = match &args.webhook_basic {
                    Some(b) => match b.split_once(':') {
                        Some((u, p)) => Some((u.to_owned(), p.to_owned())),
                        None => anyhow::bail!("--webhook-basic must be USER:PASSWORD"),
                    },
                    None => None,
                };
                if !(0.0..=1.0).contains(&args.webhook_drop_rate) {
                    anyhow::bail!(
                        "--webhook-drop-rate {} must be from 0 to 1",
                        args.webhook_drop_rate
                    );
                }
                Some(crate::sim::WebhookTarget {
                    url: url.clone(),
                    secret: args.webhook_secret.clone(),
                    header: args.webhook_header.clone(),
                    basic,
                    drop_rate: args.webhook_drop_rate,
                })
            }
        },
    });
    let sim = if args.slotti { sim.with_slotti() } else { sim };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", args.listen))?;
    let addr = listener.local_addr()?;
    outln!("listening on http://{addr}/v10/api/")?;
    if args.slotti {
        outln!("slotti on http://{addr}/slotti/")?;
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%addr, tickets = args.tickets, accounts = args.accounts, seed = args.seed, "Simulator started.");
    sim.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn cost(config: &Config, args: CostArgs) -> anyhow::Result<ExitCode> {
    let now = time::now();
    let month = args.month.clone().unwrap_or_else(|| time::local_month(now));
    let month = crate::domain::cost::Month::parse(&month).map_err(|e| usage(format!("{e:#}")))?;
    let mut store = open_store(config).await?;
    let ticks = crate::service::schedule::month_ticks(
        &config.schedule.poll,
        &config.reconcile_schedule(),
        &month,
    );
    let report = crate::engine::status::cost_report(config, &mut store, &month, ticks, now)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", crate::domain::cost::render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn purge(config: &Config, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let _lock = match crate::service::lock::StoreLock::acquire(
        &config.store.path,
        std::time::Duration::from_secs(30),
    )
    .await?
    {
        Ok(l) => l,
        Err(busy) => {
            eprintln!("error: {busy}");
            return Ok(ExitCode::from(crate::service::lock::EXIT_BUSY));
        }
    };
    let retention = crate::service::retention::from_config(config);
    let path = config.store.path.clone();
    let report = tokio::task::spawn_blocking(move || {
        Store::open(&path)?.purge(&retention, time::now(), args.dry_run)
    })
    .await??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!(
            "{}personal data erased from {} ticket(s) that left the open set over {} days ago, free text from {} action(s), {} error text(s), {} webhook event(s), customer data from {} visit(s) and {} Slotti delivery(s); {} old bookkeeping row(s), {} change-feed event(s) older than {} days and {} Idempotency-Key(s) older than {} h deleted",
            if report.dry_run {
                "dry run, nothing changed: "
            } else {
                ""
            },
            report.tickets_erased,
            config.privacy.retain_days,
            report.actions_erased,
            report.errors_erased,
            report.events_erased,
            report.visits_erased,
            report.deliveries_erased,
            report.rows_deleted,
            report.feed_events_deleted,
            crate::config::feed_retain_days(config.api.as_ref()),
            report.idempotency_keys_deleted,
            crate::faces::api::IDEMPOTENCY_KEEP.as_secs() / 3600
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
