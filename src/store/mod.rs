//! The SQLite store: the only module that speaks SQL.
//!
//! The schema lives in `sql/` as numbered plain .sql files, embedded in the binary and applied
//! on open with `rusqlite_migration`; before a migration touches an existing store, a copy is
//! written beside it with `VACUUM INTO`. The store runs in WAL mode with `synchronous = FULL`
//! (a committed outbox row survives power loss), a busy timeout, and short IMMEDIATE write
//! transactions that are never held across an API call.
//!
//! A sweep is staged in two TEMP tables (`sweep_seen`, `sweep_stage`) page by page, so memory
//! does not grow with the number of tickets and nothing in `tickets` changes until the whole
//! sweep is known to be consistent; [`Store::apply_sweep`] then applies it in one transaction.

mod api;
mod outbox;
mod purge;
mod queries;
mod webhook;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations, SchemaVersion};

use crate::model::{Departure, LeftReason, Ticket, changed_fields};
pub use api::{FeedBounds, FeedEvent, HistoryEntry, TicketDetail, TicketPageQuery};
pub use outbox::{AttemptEnd, OutboxRow, Snapshot};
pub use purge::{PERSONAL_FIELDS, PurgeReport};
pub use queries::{AccountStatus, TicketFilter, TicketRow};
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
);

/// The columns a ticket's content fills, in [`ticket_values`] order.
const TICKET_COLUMNS: &str = "state, title, description, extra_info, assignee_id, cost_centre_id, \
     space_id, room_id, parent_id, urgency, access, fault_class, earliest, latest, reporter_name, \
     reporter_phone, reporter_email, remote_created, remote_modified, raw_json, content_hash";

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
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<rusqlite::Error>())
            .and_then(rusqlite::Error::sqlite_error_code);
        match code {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => e
                .context(format!(
                    "the store {} is corrupt: {CORRUPT_ADVICE}",
                    self.path.display()
                )),
            Some(code) => match cause(code) {
                Some(why) => e.context(format!("the store {}: {why}", self.path.display())),
                None => e,
            },
            None => e,
        }
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

    // ---- sync runs -------------------------------------------------------------------------

    /// Records the start of a sync run; runs of this account that a killed process left
    /// `running` are closed as `interrupted` first.
    pub fn begin_run(&mut self, account: &str, now: &str, trigger: &str) -> anyhow::Result<i64> {
        let tx = self
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

    /// Finishes a run (its calls are metered by the client, `Client::record_calls`).
    pub fn finish_run(&mut self, run_id: i64, now: &str, r: &RunRecord) -> anyhow::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
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
        tx.commit()?;
        Ok(())
    }

    /// Adds calls to the meter (`Client::record_calls` is the one caller).
    pub fn record_calls(
        &mut self,
        account: &str,
        day: &str,
        calls: &crate::tampuuri::CallCounts,
    ) -> anyhow::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        meter(&tx, account, day, calls)?;
        tx.commit()?;
        Ok(())
    }

    // ---- sweeps ----------------------------------------------------------------------------

    /// Empties the staging tables for a new sweep.
    pub fn begin_sweep(&mut self) -> anyhow::Result<()> {
        self.conn.execute_batch(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS sweep_seen (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS sweep_stage (id INTEGER PRIMARY KEY, {TICKET_COLUMNS});
             DELETE FROM temp.sweep_seen;
             DELETE FROM temp.sweep_stage;"
        ))?;
        Ok(())
    }

    /// Stages one page: every ticket is marked seen; those that are new, changed, or back in
    /// the open set are staged in full. Only TEMP tables are written.
    pub fn stage_page(&mut self, account: &str, tickets: &[Ticket]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut seen =
                tx.prepare_cached("INSERT OR IGNORE INTO temp.sweep_seen (id) VALUES (?1)")?;
            let mut known = tx.prepare_cached(
                "SELECT content_hash, open FROM main.tickets WHERE account = ?1 AND id = ?2",
            )?;
            let mut stage = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO temp.sweep_stage (id, {TICKET_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
            ))?;
            for t in tickets {
                seen.execute([t.id])?;
                let current: Option<(i64, bool)> = known
                    .query_row(params![account, t.id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if current != Some((t.content_hash, true)) {
                    stage.execute(rusqlite::params_from_iter(
                        std::iter::once(&t.id as &dyn rusqlite::ToSql).chain(ticket_values(t)),
                    ))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Tickets of `account` in the open set that the staged sweep did not see.
    pub fn unseen_open(&self, account: &str) -> anyhow::Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM tickets WHERE account = ?1 AND open = 1
               AND id NOT IN (SELECT id FROM temp.sweep_seen) ORDER BY id",
        )?;
        let ids = stmt
            .query_map([account], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// How many distinct tickets the staged sweep saw.
    pub fn seen_count(&self) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM temp.sweep_seen", [], |r| r.get(0))?)
    }

    /// Applies the staged sweep in one transaction: new tickets inserted, changed ones
    /// updated, departures recorded, a history row for each. Unchanged tickets are not written.
    pub fn apply_sweep(
        &mut self,
        account: &str,
        run_id: Option<i64>,
        now: &str,
        departures: &[Departure],
    ) -> anyhow::Result<ApplyCounts> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counts = ApplyCounts::default();
        {
            // Known tickets that changed or came back: history names the changed fields. In
            // chunks by id, so memory stays flat when every ticket changed at once.
            let mut changed = tx.prepare_cached(
                "SELECT s.id, t.raw_json, s.raw_json, t.state, s.state, t.open
                 FROM temp.sweep_stage s JOIN main.tickets t ON t.account = ?1 AND t.id = s.id
                 WHERE s.id > ?2 ORDER BY s.id LIMIT 1000",
            )?;
            let mut update = tx.prepare_cached(&format!(
                "UPDATE tickets SET ({TICKET_COLUMNS}) = (SELECT {TICKET_COLUMNS} FROM temp.sweep_stage WHERE id = ?2),
                     last_changed = CASE WHEN ?4 THEN ?3 ELSE last_changed END,
                     open = 1, left_at = NULL, left_reason = NULL
                 WHERE account = ?1 AND id = ?2"
            ))?;
            let mut note = tx.prepare_cached(
                "INSERT INTO ticket_changes (account, ticket_id, run_id, at, kind, fields, old_state, new_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut after = i64::MIN;
            loop {
                let rows: Vec<(i64, String, String, String, String, bool)> = changed
                    .query_map(params![account, after], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    })?
                    .collect::<Result<_, _>>()?;
                let Some(last) = rows.last().map(|r| r.0) else {
                    break;
                };
                after = last;
                for (id, old_raw, new_raw, old_state, new_state, was_open) in rows {
                    let fields = changed_fields(&old_raw, &new_raw);
                    let real = !fields.is_empty() || !was_open;
                    update.execute(params![account, id, now, real])?;
                    counts.rows_written += 1;
                    if real {
                        let kind = if was_open { "changed" } else { "returned" };
                        note.execute(params![
                            account,
                            id,
                            run_id,
                            now,
                            kind,
                            serde_json::to_string(&fields)?,
                            old_state,
                            new_state
                        ])?;
                        if was_open {
                            counts.changed += 1
                        } else {
                            counts.new += 1
                        }
                    }
                }
            }

            // Brand-new tickets, in bulk.
            let mut history = tx.prepare_cached(
                "INSERT INTO ticket_changes (account, ticket_id, run_id, at, kind, new_state)
                 SELECT ?1, s.id, ?2, ?3, 'appeared', s.state FROM temp.sweep_stage s
                 WHERE NOT EXISTS (SELECT 1 FROM main.tickets t WHERE t.account = ?1 AND t.id = s.id)",
            )?;
            history.execute(params![account, run_id, now])?;
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO tickets (account, id, {TICKET_COLUMNS}, first_seen, last_changed, open)
                 SELECT ?1, s.id, {cols}, ?2, ?2, 1 FROM temp.sweep_stage s
                 WHERE NOT EXISTS (SELECT 1 FROM main.tickets t WHERE t.account = ?1 AND t.id = s.id)",
                cols = prefixed("s.")
            ))?;
            let inserted = insert.execute(params![account, now])? as u64;
            counts.new += inserted;
            counts.rows_written += inserted;

            // Departures, each confirmed by a fetch of its own.
            let mut leave = tx.prepare_cached(
                "UPDATE tickets SET open = 0, left_at = ?3, left_reason = ?4, last_changed = ?3
                 WHERE account = ?1 AND id = ?2 AND open = 1",
            )?;
            let mut refresh = tx.prepare_cached(&format!(
                "UPDATE tickets SET ({TICKET_COLUMNS}) = (?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                 WHERE account = ?1 AND id = ?2"
            ))?;
            let mut state_of = tx.prepare_cached(
                "SELECT state, raw_json, open, left_reason, content_hash FROM tickets WHERE account = ?1 AND id = ?2",
            )?;
            // A ticket that had already left, fetched again (an in-doubt check, a webhook):
            // its content and why it is out of the open set, with a history row.
            let mut relabel = tx.prepare_cached(
                "UPDATE tickets SET left_reason = ?3, last_changed = ?4 WHERE account = ?1 AND id = ?2",
            )?;
            for d in departures {
                let (id, reason, ticket) = match d {
                    Departure::Left { ticket, reason } => {
                        (ticket.id, reason.as_str(), Some(ticket))
                    }
                    Departure::Deleted { id } => (*id, "deleted", None),
                };
                type Known = (String, String, bool, Option<String>, i64);
                let Some((old_state, old_raw, was_open, old_reason, old_hash)): Option<Known> =
                    state_of
                        .query_row(params![account, id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })
                        .optional()?
                else {
                    continue;
                };
                if !was_open {
                    let content_changed = ticket.is_some_and(|t| t.content_hash != old_hash);
                    if !content_changed && old_reason.as_deref() == Some(reason) {
                        continue;
                    }
                    if let Some(t) = ticket.filter(|_| content_changed) {
                        refresh.execute(rusqlite::params_from_iter(
                            [&account as &dyn rusqlite::ToSql, &id]
                                .into_iter()
                                .chain(ticket_values(t)),
                        ))?;
                    }
                    relabel.execute(params![account, id, reason, now])?;
                    counts.rows_written += 1;
                    let fields = ticket
                        .map(|t| changed_fields(&old_raw, &t.raw_json))
                        .unwrap_or_default();
                    note.execute(params![
                        account,
                        id,
                        run_id,
                        now,
                        "changed",
                        serde_json::to_string(&fields)?,
                        old_state,
                        ticket.map_or(old_state.clone(), |t| t.state.name().to_owned())
                    ])?;
                    continue;
                }
                if let Some(t) = ticket {
                    refresh.execute(rusqlite::params_from_iter(
                        [&account as &dyn rusqlite::ToSql, &id]
                            .into_iter()
                            .chain(ticket_values(t)),
                    ))?;
                }
                if leave.execute(params![account, id, now, reason])? == 1 {
                    counts.gone += 1;
                    counts.rows_written += 1;
                    let fields = ticket
                        .map(|t| changed_fields(&old_raw, &t.raw_json))
                        .unwrap_or_default();
                    let new_state = ticket.map(|t| t.state.name().to_owned());
                    note.execute(params![
                        account,
                        id,
                        run_id,
                        now,
                        "left",
                        serde_json::to_string(&fields)?,
                        old_state,
                        new_state
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(counts)
    }
}

impl Store {
    /// Records one ticket fetched outside a sweep (after a create, or for a webhook): upserted
    /// with history when it is ours and open, else recorded as having left the open set.
    pub fn upsert_fetched(
        &mut self,
        account: &str,
        ticket: Ticket,
        open: Result<(), LeftReason>,
        now: &str,
    ) -> anyhow::Result<ApplyCounts> {
        self.begin_sweep()?;
        match open {
            Ok(()) => {
                self.stage_page(account, std::slice::from_ref(&ticket))?;
                self.apply_sweep(account, None, now, &[])
            }
            Err(reason) => self.apply_sweep(
                account,
                None,
                now,
                &[Departure::Left {
                    ticket: Box::new(ticket),
                    reason,
                }],
            ),
        }
    }
}

impl Store {
    /// Records that Tampuuri no longer has a ticket we held (a fetch answered 404).
    pub fn record_deleted(
        &mut self,
        account: &str,
        id: i64,
        now: &str,
    ) -> anyhow::Result<ApplyCounts> {
        self.begin_sweep()?;
        self.apply_sweep(account, None, now, &[Departure::Deleted { id }])
    }
}

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
            f(&mut store).map_err(|e| store.explain(e))
        })
        .await?
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

/// Adds calls to `api_calls`.
fn meter(
    tx: &rusqlite::Transaction<'_>,
    account: &str,
    day: &str,
    calls: &crate::tampuuri::CallCounts,
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

impl rusqlite::ToSql for crate::model::TicketState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.name().as_bytes()),
        ))
    }
}

/// `TICKET_COLUMNS` with each name prefixed (`s.state, s.title, …`).
fn prefixed(prefix: &str) -> String {
    TICKET_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ticket's values in `TICKET_COLUMNS` order.
fn ticket_values(t: &Ticket) -> [&dyn rusqlite::ToSql; 21] {
    [
        &t.state,
        &t.title,
        &t.description,
        &t.extra_info,
        &t.assignee_id,
        &t.cost_centre_id,
        &t.space_id,
        &t.room_id,
        &t.parent_id,
        &t.urgency,
        &t.access,
        &t.fault_class,
        &t.earliest,
        &t.latest,
        &t.reporter.name,
        &t.reporter.phone,
        &t.reporter.email,
        &t.remote_created,
        &t.remote_modified,
        &t.raw_json,
        &t.content_hash,
    ]
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
