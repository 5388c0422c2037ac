//! The SQLite store: the only module that speaks SQL.
//!
//! The schema lives in `sql/` as numbered plain .sql files, embedded in the binary and applied
//! on open with `rusqlite_migration`; before a migration touches an existing store, a copy is
//! written beside it with `VACUUM INTO`. The store runs in WAL mode with `synchronous = FULL`
//! (a committed outbox row survives power loss), a busy timeout, and short IMMEDIATE write
//! transactions that are never held across an API call.
//!
//! A sweep is staged page by page in a [`Staging`], which owns a connection of its own and its
//! TEMP tables, so memory does not grow with the number of tickets and nothing in `tickets`
//! changes until the whole sweep is known to be consistent; [`Staging::apply`] then applies it
//! in one transaction. One ticket fetched outside a sweep is written directly
//! ([`Mirror::upsert_fetched`]). Both write through `mirror`, which holds the SQL fragments of
//! `tickets` and `ticket_changes` and the one rule for what a fetched ticket writes.
//!
//! The store imports neither the config nor the API module: the purge takes a [`Retention`],
//! the meter plain `(endpoint, calls)` pairs.

mod api;
mod board;
mod board_page;
mod booking;
mod mirror;
mod outbox;
mod purge;
mod queries;
mod slotti;
mod staging;
mod subscribers;
mod visits;
mod webhook;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations, SchemaVersion};

pub use api::{
    Claim, ClaimLost, DeliveredAction, FeedBounds, FeedEvent, HistoryEntry, KeptAnswer, KeyClaim,
    TicketDetail, TicketPageQuery,
};
pub use board::{BoardSession, LinkUse, NewBoardSession};
pub use board_page::{BoardPage, BoardQuery, BoardRow, FailedAction, URGENT};
pub use booking::BookingTicket;
pub use mirror::AccountRules;
pub use outbox::{AttemptEnd, OutboxRefusal, OutboxRow, Snapshot, TellQueued};
pub use purge::{PurgeReport, Retention};
pub use queries::{AccountStatus, CallsOf, TicketFilter, TicketRow};
pub use slotti::{ReconcileRun, SlottiSyncStatus};
pub use staging::{Staging, StagingHandle};
pub use subscribers::SubscriberRow;
pub use visits::{
    NewVisit, NextVisit, SeenBooking, SlottiDelivery, UntoldChange, Visit, VisitChange,
    VisitCustomer, VisitFilter, VisitInsert, VisitSeen, VisitSource,
};
pub use webhook::{NewEvent, PendingEvent, WebhookStatus};

/// `(file in sql/, its text)` for every migration, in order.
macro_rules! sql_files {
    ($($file:literal,)*) => { &[$(($file, include_str!(concat!("../../sql/", $file))),)*] };
}

/// The schema, one migration per file in `sql/`, in order.
const MIGRATIONS: &[(&str, &str)] = sql_files!(
    "001_read_path.sql",
    "002_outbox.sql",
    "003_retention.sql",
    "004_webhooks.sql",
    "005_outbox_before_send.sql",
    "006_webhook_retry.sql",
    "007_feed.sql",
    "008_webhook_reconciled.sql",
    "009_subscribers.sql",
    "010_api_writes.sql",
    "011_visits.sql",
    "012_idempotency_claims.sql",
    "013_board.sql",
    "014_book_outbox.sql",
    "015_slotti_sync.sql",
    "016_ticket_address.sql",
    "017_delivered.sql",
    "018_webhook_fetch_budget.sql",
    "019_changed_fields_in_model_terms.sql",
    "020_board_search_covered.sql",
);

/// An open connection to the store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What a sweep changed in the mirror.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyCounts {
    /// Tickets new to the mirror, or back in the open set.
    pub new: u64,
    /// Open tickets whose content changed.
    pub changed: u64,
    /// Tickets that left the open set.
    pub gone: u64,
    /// Rows written to `tickets`.
    pub rows_written: u64,
}

/// What a sync run did besides what its apply counts: finished as `ok` in the transaction that
/// applies its sweep ([`Staging::apply_finishing`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunTally {
    pub sweeps: u32,
    pub pages: u32,
    /// Calls sent, retries included.
    pub api_calls: u64,
}

/// How a sync run ended, for `sync_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub ok: bool,
    pub sweeps: u32,
    pub pages: u32,
    pub api_calls: u64,
    pub seen: u64,
    pub counts: ApplyCounts,
    pub error: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, checks it, and brings its schema up to
    /// date. For the commands that write: `run`, `task`, `purge`, the daemon.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the store's folder {}", dir.display()))?;
        }
        Store::open_with(path, true)
    }

    /// Opens the store at `path` like [`Store::open`], but never creates one: the read-only
    /// commands (`status`, `tasks`, `outbox`, `cost`) say there is no store instead.
    pub fn open_existing(path: &Path) -> anyhow::Result<Store> {
        if !path.exists() {
            bail!(
                "no store at {}: run `huoltosync run --once` first (or check [store] path)",
                path.display()
            );
        }
        Store::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> anyhow::Result<Store> {
        use rusqlite::OpenFlags;
        let existed = path.exists();
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            // SQLite says only "unable to open database file"; the file system says why.
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
            {
                Err(io) if existed => {
                    anyhow::anyhow!("cannot open the store {}: {io}", path.display())
                }
                _ => store_error(path, "cannot open the store", e, None),
            }
        })?;
        let fail = |what: &str, e: rusqlite::Error| store_error(path, what, e, Some(&conn));
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| fail("cannot open the store", e))?;
        // The first statement that reads the file: a file that is not SQLite, a read-only file
        // or file system, or a full disk shows here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("cannot open the store", e))?;
        for (pragma, value) in [
            ("synchronous", "FULL"),
            ("foreign_keys", "ON"),
            // Freed bytes are zeroed, so erased personal data is really gone from the file.
            ("secure_delete", "ON"),
            ("temp_store", "FILE"),
        ] {
            conn.pragma_update(None, pragma, value)
                .map_err(|e| fail("cannot open the store", e))?;
        }
        if existed && check_due(path) {
            let found = quick_check(&conn).map_err(|e| fail("cannot check the store", e))?;
            if !found.is_empty() {
                bail!(
                    "the store {} is corrupt (SQLite quick_check: {}): {CORRUPT_ADVICE}",
                    path.display(),
                    found.join("; ")
                );
            }
            checked(path);
        }
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store.migrate(existed)?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names the store and the cause when `e` comes from SQLite finding the store corrupt, its
    /// disk full, or its file read-only: the errors an operator must act on.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        explain(&self.path, e)
    }

    fn migrate(&mut self, existed: bool) -> anyhow::Result<()> {
        // Connections opened at once by one process (accounts syncing side by side) take turns.
        static MIGRATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = MIGRATING.lock().unwrap_or_else(|p| p.into_inner());
        let migrations = Migrations::new(MIGRATIONS.iter().map(|(_, sql)| M::up(sql)).collect());
        let latest = MIGRATIONS.len();
        let current = match migrations.current_version(&self.conn).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the schema version of the store {}: {}",
                self.path.display(),
                migration_message(&e, None)
            )
        })? {
            SchemaVersion::NoneSet => 0,
            SchemaVersion::Inside(v) => v.get(),
            SchemaVersion::Outside(v) => bail!(
                "the store {} has schema version {v}, newer than this huoltosync knows ({latest}): use a newer huoltosync",
                self.path.display()
            ),
        };
        if current == latest {
            return Ok(());
        }
        if existed && current > 0 {
            self.pre_migration_copy(current, latest)?;
        }
        migrations.to_latest(&mut self.conn).map_err(|e| {
            // The failing migration is named by its file; its SQL text is not repeated.
            let file = match &e {
                rusqlite_migration::Error::RusqliteError { query, .. } => {
                    MIGRATIONS.iter().find(|(_, sql)| sql == query)
                }
                _ => None,
            };
            anyhow::anyhow!(
                "cannot migrate the store {} from schema version {current} to {latest}{}: {}",
                self.path.display(),
                file.map(|(f, _)| format!(": sql/{f}")).unwrap_or_default(),
                migration_message(&e, file.map(|(_, sql)| *sql))
            )
        })?;
        Ok(())
    }

    /// Writes a copy of the store, as it is before migrating from `current` to `latest`,
    /// beside it (`store.pre-v4.20260101T120000.bak`). One copy per upgrade: when an earlier
    /// attempt at the same upgrade failed, its copy is the store before that attempt, and is
    /// kept. The copy is written under a temporary name and renamed, so a copy that is there is
    /// whole.
    fn pre_migration_copy(&self, current: usize, latest: usize) -> anyhow::Result<()> {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{stem}.pre-v{latest}.");
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_owned(),
            None => PathBuf::from("."),
        };
        let earlier = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list the store's folder {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&prefix) && n.ends_with(".bak"));
        if let Some(name) = earlier {
            tracing::info!(from = current, to = latest, backup = %dir.join(&name).display(), "Migrating the store; the copy an earlier attempt wrote is kept.");
            return Ok(());
        }
        let backup = self.path.with_extension(format!(
            "pre-v{latest}.{}.bak",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        let partial = self.path.with_extension(format!("pre-v{latest}.partial"));
        let _ = std::fs::remove_file(&partial);
        self.conn
            .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
            .map_err(|e| {
                store_error(
                    &backup,
                    "cannot write the pre-migration copy",
                    e,
                    Some(&self.conn),
                )
            })?;
        std::fs::rename(&partial, &backup)
            .with_context(|| format!("cannot write the pre-migration copy {}", backup.display()))?;
        tracing::info!(from = current, to = latest, backup = %backup.display(), "Migrating the store; a copy was written first.");
        Ok(())
    }

    /// The raw connection, for tests and tools that read the store like the contractor's
    /// systems do.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

// ---- the areas ---------------------------------------------------------------------------
//
// Each area of the store is a handle that borrows it for one call or a few: `store.outbox()`,
// `store.mirror()`. A handle is a thin borrow of the whole store, so a method that writes two
// areas in one transaction (the outbox row marked applied and the mirror written, in
// `finish_attempt`) is still one method, on the area that owns the step. Reads take `&self`,
// writes `&mut self`, as on the store itself.

/// The mirror of Tampuuri's tickets: the direct writes of one fetched ticket (`mirror.rs`; a
/// sweep writes through [`Staging`]) and the reads of its tickets (`queries.rs`, `api.rs`,
/// `board_page.rs`).
pub struct Mirror<'a>(&'a mut Store);

/// The outbox: actions queued, attempted and delivered (`outbox.rs`).
pub struct Outbox<'a>(&'a mut Store);

/// The change feed the API and the outgoing events read (`api.rs`, `subscribers.rs`).
pub struct Feed<'a>(&'a mut Store);

/// The API's Idempotency-Keys and the answers kept for them (`api.rs`).
pub struct Idempotency<'a>(&'a mut Store);

/// The web board: its sessions and login links (`board.rs`) and its pages (`board_page.rs`).
pub struct Board<'a>(&'a mut Store);

/// Slotti visits and bookings: the visits and their changes (`visits.rs`), the book actions
/// (`booking.rs`), Slotti's deliveries, counters and reconciliations (`slotti.rs`).
pub struct Visits<'a>(&'a mut Store);

/// Tampuuri's webhook events and the fetches they cost (`webhook.rs`).
pub struct Webhook<'a>(&'a mut Store);

/// The outgoing-event subscribers' cursors (`subscribers.rs`).
pub struct Subscribers<'a>(&'a mut Store);

/// Sync runs (`mod.rs`, `queries.rs`).
pub struct Runs<'a>(&'a mut Store);

/// The call meter, `api_calls` (`mod.rs`, `queries.rs`).
pub struct Meter<'a>(&'a mut Store);

impl Store {
    /// The mirror of Tampuuri's tickets.
    pub fn mirror(&mut self) -> Mirror<'_> {
        Mirror(self)
    }

    /// The outbox.
    pub fn outbox(&mut self) -> Outbox<'_> {
        Outbox(self)
    }

    /// The change feed.
    pub fn feed(&mut self) -> Feed<'_> {
        Feed(self)
    }

    /// The API's Idempotency-Keys.
    pub fn idempotency(&mut self) -> Idempotency<'_> {
        Idempotency(self)
    }

    /// The web board's sessions, links and pages.
    pub fn board(&mut self) -> Board<'_> {
        Board(self)
    }

    /// Slotti visits and bookings.
    pub fn visits(&mut self) -> Visits<'_> {
        Visits(self)
    }

    /// Tampuuri's webhook events.
    pub fn webhook(&mut self) -> Webhook<'_> {
        Webhook(self)
    }

    /// The outgoing-event subscribers.
    pub fn subscribers(&mut self) -> Subscribers<'_> {
        Subscribers(self)
    }

    /// Sync runs.
    pub fn runs(&mut self) -> Runs<'_> {
        Runs(self)
    }

    /// The call meter.
    pub fn meter(&mut self) -> Meter<'_> {
        Meter(self)
    }
}

impl Runs<'_> {
    /// Records the start of a sync run; runs of this account that a killed process left
    /// `running` are closed as `interrupted` first.
    pub fn begin_run(&mut self, account: &str, now: &str, trigger: &str) -> anyhow::Result<i64> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE sync_runs SET outcome = 'interrupted', finished_at = ?2,
                 error = 'the process ended before this run finished'
             WHERE account = ?1 AND outcome = 'running'",
            params![account, now],
        )?;
        tx.execute(
            "INSERT INTO sync_runs (account, started_at, outcome, trigger) VALUES (?1, ?2, 'running', ?3)",
            params![account, now, trigger],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Finishes a run (its calls are metered by the client, `Client::record_calls`). A run
    /// that applied its sweep was finished by the apply ([`Staging::apply_finishing`]); this
    /// is for one that failed before.
    pub fn finish_run(&mut self, run_id: i64, now: &str, r: &RunRecord) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        finish_run_in(&tx, run_id, now, r)?;
        tx.commit()?;
        Ok(())
    }
}

impl Meter<'_> {
    /// Adds calls, as `(endpoint, calls)`, to the meter of `account` on `day`
    /// (`Client::record_calls` is the one caller).
    pub fn record_calls<'a>(
        &mut self,
        account: &str,
        day: &str,
        calls: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        meter(&tx, account, day, calls)?;
        tx.commit()?;
        Ok(())
    }
}

/// Notified (`notify_waiters`) after every [`Handle::call`] that wrote: the feed may have new
/// events. Those who follow the feed (the outgoing event tasks) wait on it, and check the feed
/// on an interval too for other processes' commits.
pub static FEED_WRITTEN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The store shared by async tasks: each call runs on a blocking thread, one at a time, so
/// SQLite work never stalls the runtime.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Store>>);

impl Handle {
    /// Opens (and migrates) the store at `path`.
    pub async fn open(path: PathBuf) -> anyhow::Result<Handle> {
        let store = tokio::task::spawn_blocking(move || Store::open(&path)).await??;
        Ok(Handle(Arc::new(Mutex::new(store))))
    }

    /// Opens the store at `path` without creating one ([`Store::open_existing`]).
    pub async fn open_existing(path: PathBuf) -> anyhow::Result<Handle> {
        let store = tokio::task::spawn_blocking(move || Store::open_existing(&path)).await??;
        Ok(Handle(Arc::new(Mutex::new(store))))
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = inner.lock().unwrap_or_else(|p| p.into_inner());
            let before = store.conn.total_changes();
            let r = f(&mut store).map_err(|e| store.explain(e));
            if store.conn.total_changes() != before {
                // A write may have added feed events: wake whoever follows the feed.
                FEED_WRITTEN.notify_waiters();
            }
            r
        })
        .await?
    }
}

/// [`Store::explain`] for the store at `path`.
fn explain(path: &Path, e: anyhow::Error) -> anyhow::Error {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<rusqlite::Error>())
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => e
            .context(format!(
                "the store {} is corrupt: {CORRUPT_ADVICE}",
                path.display()
            )),
        Some(code) => match cause(code) {
            Some(why) => e.context(format!("the store {}: {why}", path.display())),
            None => e,
        },
        None => e,
    }
}

/// How long a passed `quick_check` holds for the process: a command checks its store once;
/// the daemon, which opens it for every cycle and every account, once an hour.
const QUICK_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// When each store last passed `quick_check` in this process.
static CHECKED: Mutex<Vec<(PathBuf, std::time::Instant)>> = Mutex::new(Vec::new());

/// Whether the store at `path` is due a `quick_check`.
fn check_due(path: &Path) -> bool {
    let checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    !checked
        .iter()
        .any(|(p, at)| p == path && at.elapsed() < QUICK_CHECK_EVERY)
}

/// Records that the store at `path` passed `quick_check` now.
fn checked(path: &Path) {
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    checked.retain(|(p, _)| p != path);
    checked.push((path.to_owned(), std::time::Instant::now()));
}

/// `PRAGMA quick_check`: what it found wrong, empty when the store is sound. Cheap at a
/// mirror's size: it reads every page once, without the index cross-checks of
/// `integrity_check`.
fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let found: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(found.into_iter().filter(|f| f != "ok").collect())
}

/// What an operator does about a corrupt store.
const CORRUPT_ADVICE: &str = "stop huoltosync, keep the file for inspection, and restore a backup (or move it away and run `huoltosync run --once` to mirror afresh)";

/// The cause of a store error in words, for the SQLite errors an operator can act on.
fn cause(code: rusqlite::ErrorCode) -> Option<&'static str> {
    use rusqlite::ErrorCode;
    Some(match code {
        ErrorCode::DatabaseCorrupt => "it is corrupt",
        ErrorCode::NotADatabase => "it is not an SQLite database, or it is corrupt",
        ErrorCode::ReadOnly => "it cannot be written (read-only file or file system)",
        ErrorCode::PermissionDenied => "permission denied",
        ErrorCode::DiskFull => "the disk is full",
        ErrorCode::CannotOpen => "SQLite cannot open it, or the -wal and -shm files beside it",
        _ => return None,
    })
}

/// A store error that says what happened: the file, what was being done, and the cause in
/// words, with the operating system's own error when SQLite recorded one.
fn store_error(
    path: &Path,
    doing: &str,
    e: rusqlite::Error,
    conn: Option<&Connection>,
) -> anyhow::Error {
    // SAFETY: the handle belongs to a live connection; sqlite3_system_errno only reads it.
    let errno = conn.map_or(0, |c| unsafe {
        rusqlite::ffi::sqlite3_system_errno(c.handle())
    });
    let detail = match errno {
        0 => e.to_string(),
        n => format!("{e}; {}", std::io::Error::from_raw_os_error(n)),
    };
    let path = path.display();
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            anyhow::anyhow!("{doing} {path}: it is corrupt ({detail}): {CORRUPT_ADVICE}")
        }
        Some(code) if cause(code).is_some() => {
            anyhow::anyhow!(
                "{doing} {path}: {} ({detail})",
                cause(code).unwrap_or_default()
            )
        }
        _ => anyhow::anyhow!("{doing} {path}: {detail}"),
    }
}

/// A migration error's SQLite message, without the SQL text it ran: the line in `file_sql`
/// (the migration's text) when SQLite points at a token.
fn migration_message(e: &rusqlite_migration::Error, file_sql: Option<&str>) -> String {
    match e {
        rusqlite_migration::Error::RusqliteError {
            err: rusqlite::Error::SqlInputError {
                msg, sql, offset, ..
            },
            ..
        } => {
            // SQLite's offset is into the statements it was given: the file, or its tail.
            let line = file_sql
                .filter(|f| f.ends_with(sql.as_str()))
                .zip(usize::try_from(*offset).ok())
                .and_then(|(f, o)| f.get(..f.len() - sql.len() + o))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg.clone(),
            }
        }
        rusqlite_migration::Error::RusqliteError { err, .. } => err.to_string(),
        other => other.to_string(),
    }
}

/// Adds calls, as `(endpoint, calls)`, to `api_calls`.
fn meter<'a>(
    tx: &rusqlite::Transaction<'_>,
    account: &str,
    day: &str,
    calls: impl IntoIterator<Item = (&'a str, u64)>,
) -> anyhow::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO api_calls (account, day, endpoint, calls) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account, day, endpoint) DO UPDATE SET calls = calls + excluded.calls",
    )?;
    for (endpoint, n) in calls {
        stmt.execute(params![account, day, endpoint, n])?;
    }
    Ok(())
}

impl rusqlite::ToSql for crate::domain::model::TicketState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.name().as_bytes()),
        ))
    }
}

/// Writes how run `run_id` ended into `sync_runs`, in the caller's transaction; a complete
/// (`ok`) run also settles the webhook events parked before it started.
fn finish_run_in(conn: &Connection, run_id: i64, now: &str, r: &RunRecord) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?2, outcome = ?3, sweeps = ?4, pages = ?5, api_calls = ?6,
             seen_count = ?7, new_count = ?8, changed_count = ?9, gone_count = ?10, error = ?11
         WHERE id = ?1",
        params![
            run_id,
            now,
            if r.ok { "ok" } else { "failed" },
            r.sweeps,
            r.pages,
            r.api_calls,
            r.seen,
            r.counts.new,
            r.counts.changed,
            r.counts.gone,
            r.error
        ],
    )?;
    if r.ok {
        // A complete sync covers every ticket whose webhook events were parked before it
        // started: they are settled.
        conn.execute(
            "UPDATE webhook_events SET status = 'reconciled', processed_at = ?2,
                 reason = 'covered by sync run ' || ?1
             WHERE status = 'parked'
               AND account = (SELECT account FROM sync_runs WHERE id = ?1)
               AND received_at <= (SELECT started_at FROM sync_runs WHERE id = ?1)",
            params![run_id, now],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_name_the_file_and_the_cause_in_words() {
        let path = Path::new("/var/lib/huoltosync/store.db");
        for (code, words) in [
            (
                rusqlite::ffi::SQLITE_READONLY,
                "read-only file or file system",
            ),
            (rusqlite::ffi::SQLITE_PERM, "permission denied"),
            (rusqlite::ffi::SQLITE_FULL, "the disk is full"),
            (rusqlite::ffi::SQLITE_CORRUPT, "it is corrupt"),
            (rusqlite::ffi::SQLITE_NOTADB, "not an SQLite database"),
            (rusqlite::ffi::SQLITE_CANTOPEN, "-wal and -shm files"),
        ] {
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            let text = store_error(path, "cannot open the store", e, None).to_string();
            assert!(
                text.starts_with("cannot open the store /var/lib/huoltosync/store.db: ")
                    && text.contains(words),
                "{code}: {text}"
            );
        }
    }
}
