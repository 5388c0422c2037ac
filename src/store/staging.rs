//! A sweep's staging: the pages of one sweep of one account, held in two TEMP tables
//! (`sweep_seen`, `sweep_stage`) of a connection that the [`Staging`] owns, so that memory does
//! not grow with the number of tickets and nothing in `tickets` changes until the whole sweep
//! is known to be consistent. [`Staging::apply`] then writes it in one IMMEDIATE transaction
//! and consumes the staging: a staging cannot be applied twice, staged after it was applied,
//! or shared with another sweep, and no other store work sees its tables. A sync finishes its
//! run (`sync_runs`, `ok` with its counts) in that same transaction
//! ([`Staging::apply_finishing`]), so a process killed around the commit leaves both the
//! changes and the finished run, or neither.
//!
//! ```compile_fail
//! # fn f(staging: huoltosync::store::Staging) -> anyhow::Result<()> {
//! staging.apply(None, "2026-01-01T00:00:00Z", &[], &[])?;
//! staging.seen_count()?; // the staging was consumed by `apply`
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::mirror::{
    At, CHANGE_COLUMNS, Change, OPEN_SET, TICKET_COLUMNS, content_change, depart, insert_sql, news,
    note, prefixed, reopen_sql, ticket_values, upsert_open,
};
use super::{ApplyCounts, Handle, RunRecord, RunTally, Store};
use crate::domain::model::{ChangedFields, Departure, Ticket};

/// The staged sweep of one account, on a connection of its own.
pub struct Staging {
    store: Store,
    account: String,
    /// The remote's format: which fields of a ticket's raw JSON changed.
    changed: ChangedFields,
}

impl Staging {
    /// Begins staging a sweep of `account` on `store`'s connection, which the staging keeps
    /// (TEMP tables belong to one connection). `changed` tells, in the remote's format, which
    /// fields of a ticket changed (the history's `fields`).
    pub fn begin(store: Store, account: &str, changed: ChangedFields) -> anyhow::Result<Staging> {
        store.conn.execute_batch(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS sweep_seen (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS sweep_stage (id INTEGER PRIMARY KEY, {TICKET_COLUMNS});"
        ))?;
        let mut staging = Staging {
            store,
            account: account.to_owned(),
            changed,
        };
        staging.restart()?;
        Ok(staging)
    }

    /// The account being swept.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Forgets what was staged, for a sweep that starts again (the list moved).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.store
            .conn
            .execute_batch("DELETE FROM temp.sweep_seen; DELETE FROM temp.sweep_stage;")?;
        Ok(())
    }

    /// Stages one page: every ticket is marked seen; those that are new, changed, or back in
    /// the open set are staged in full. Only TEMP tables are written.
    pub fn stage_page(&mut self, tickets: &[Ticket]) -> anyhow::Result<()> {
        let tx = self.store.conn.transaction()?;
        {
            let mut seen =
                tx.prepare_cached("INSERT OR IGNORE INTO temp.sweep_seen (id) VALUES (?1)")?;
            let mut known = tx.prepare_cached(
                "SELECT content_hash, open FROM main.tickets WHERE account = ?1 AND id = ?2",
            )?;
            let mut stage = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO temp.sweep_stage (id, {TICKET_COLUMNS}) VALUES (?1, {})",
                super::mirror::placeholders(2)
            ))?;
            for t in tickets {
                seen.execute([t.id])?;
                let current: Option<(i64, bool)> = known
                    .query_row(params![self.account, t.id], |r| Ok((r.get(0)?, r.get(1)?)))
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

    /// Tickets in the account's open set that the staged sweep did not see.
    pub fn unseen_open(&self) -> anyhow::Result<Vec<i64>> {
        let mut stmt = self.store.conn.prepare_cached(&format!(
            "SELECT id FROM tickets WHERE {OPEN_SET}
               AND id NOT IN (SELECT id FROM temp.sweep_seen) ORDER BY id"
        ))?;
        let ids = stmt
            .query_map([&self.account], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// How many distinct tickets the staged sweep saw.
    pub fn seen_count(&self) -> anyhow::Result<u64> {
        Ok(self
            .store
            .conn
            .query_row("SELECT count(*) FROM temp.sweep_seen", [], |r| r.get(0))?)
    }

    /// Applies the staged sweep in one IMMEDIATE transaction, with what the check of the
    /// unseen tickets found: those `fetched_open` (ours and open, upserted directly) and the
    /// `departures`. New tickets are inserted, changed ones updated, departures recorded, a
    /// history row for each; unchanged tickets are not written.
    pub fn apply(
        self,
        run_id: Option<i64>,
        now: &str,
        fetched_open: &[Ticket],
        departures: &[Departure],
    ) -> anyhow::Result<ApplyCounts> {
        self.write(run_id, None, now, fetched_open, departures)
    }

    /// [`Staging::apply`], finishing sync run `run_id` as `ok` in the same transaction: its
    /// counts (`tally`, the tickets in the open set the sweep saw and what the apply changed)
    /// are committed with the changes, or neither is (see [`Runs::finish_run`](super::Runs::finish_run)).
    pub fn apply_finishing(
        self,
        run_id: i64,
        tally: RunTally,
        now: &str,
        fetched_open: &[Ticket],
        departures: &[Departure],
    ) -> anyhow::Result<ApplyCounts> {
        self.write(Some(run_id), Some(tally), now, fetched_open, departures)
    }

    fn write(
        mut self,
        run_id: Option<i64>,
        tally: Option<RunTally>,
        now: &str,
        fetched_open: &[Ticket],
        departures: &[Departure],
    ) -> anyhow::Result<ApplyCounts> {
        let seen = self.seen_count()? + fetched_open.len() as u64;
        let tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = At {
            account: &self.account,
            run_id,
            now,
            action: None,
        };
        let mut counts = ApplyCounts::default();
        apply_staged_known(&tx, &at, self.changed, &mut counts)?;
        insert_staged_new(&tx, &at, &mut counts)?;
        for t in fetched_open {
            upsert_open(&tx, &at, t, self.changed, &mut counts)?;
        }
        for d in departures {
            depart(&tx, &at, d, self.changed, &mut counts)?;
        }
        if let (Some(run_id), Some(tally)) = (run_id, tally) {
            let record = RunRecord {
                ok: true,
                sweeps: tally.sweeps,
                pages: tally.pages,
                api_calls: tally.api_calls,
                seen,
                counts,
                error: None,
            };
            super::finish_run_in(&tx, run_id, now, &record)?;
        }
        tx.commit()?;
        Ok(counts)
    }
}

/// Staged tickets the mirror knows (changed, or back in the open set): updated, with history
/// naming the changed fields. In chunks by id, so memory stays flat when every ticket changed
/// at once.
fn apply_staged_known(
    tx: &rusqlite::Transaction<'_>,
    at: &At<'_>,
    changed_fields: ChangedFields,
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    let mut changed = tx.prepare_cached(
        "SELECT s.id, t.raw_json, s.raw_json, t.state, s.state, t.open,
                t.delivered_outbox_id IS NOT NULL
         FROM temp.sweep_stage s JOIN main.tickets t ON t.account = ?1 AND t.id = s.id
         WHERE s.id > ?2 ORDER BY s.id LIMIT 1000",
    )?;
    let mut update = tx.prepare_cached(&reopen_sql(&format!(
        "(SELECT {TICKET_COLUMNS} FROM temp.sweep_stage WHERE id = ?2)"
    )))?;
    let mut after = i64::MIN;
    loop {
        type Row = (i64, String, String, String, String, bool, bool);
        let rows: Vec<Row> = changed
            .query_map(params![at.account, after], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(());
        };
        after = last;
        for (id, old_raw, new_raw, old_state, new_state, was_open, delivered) in rows {
            let fields = news(
                delivered,
                old_state == new_state,
                &old_raw,
                changed_fields(&old_raw, &new_raw),
            );
            let kind = content_change(was_open, &fields);
            update.execute(params![at.account, id, at.now, kind.is_some()])?;
            counts.rows_written += 1;
            let Some(kind) = kind else { continue };
            note(
                tx,
                at,
                &Change {
                    id,
                    kind,
                    fields: Some(&fields),
                    old_state: Some(&old_state),
                    new_state: Some(&new_state),
                },
            )?;
            if was_open {
                counts.changed += 1;
            } else {
                counts.new += 1;
            }
        }
    }
}

/// Staged tickets new to the mirror: inserted in bulk, each with an `appeared` history row.
fn insert_staged_new(
    tx: &rusqlite::Transaction<'_>,
    at: &At<'_>,
    counts: &mut ApplyCounts,
) -> anyhow::Result<()> {
    const NEW: &str = "FROM temp.sweep_stage s
         WHERE NOT EXISTS (SELECT 1 FROM main.tickets t WHERE t.account = ?1 AND t.id = s.id)";
    tx.prepare_cached(&format!(
        "INSERT INTO ticket_changes ({CHANGE_COLUMNS})
         SELECT ?1, s.id, ?2, ?3, 'appeared', NULL, NULL, s.state {NEW}"
    ))?
    .execute(params![at.account, at.run_id, at.now])?;
    // In the order of the board's index `tickets_board_order` (sql/020): its wide entries are
    // then appended rather than scattered over it, as an account's first sync writes them all.
    const BOARD_ORDER: &str = "ORDER BY (s.urgency = 'Kiireellinen') DESC, (s.latest IS NULL),
         julianday(s.latest), julianday(coalesce(s.remote_created, ?2)), s.id";
    let inserted = tx
        .prepare_cached(&insert_sql(&format!(
            "SELECT ?1, s.id, {}, ?2, ?2, 1 {NEW} {BOARD_ORDER}",
            prefixed("s.")
        )))?
        .execute(params![at.account, at.now])? as u64;
    counts.new += inserted;
    counts.rows_written += inserted;
    Ok(())
}

/// A [`Staging`] shared with async code: each call runs on a blocking thread. Not `Clone`:
/// [`StagingHandle::apply`] consumes the one handle.
pub struct StagingHandle {
    inner: Arc<Mutex<Option<Staging>>>,
}

impl Handle {
    /// Begins staging a sweep of `account` on a connection of its own to this store
    /// ([`Staging::begin`]).
    pub async fn begin_staging(
        &self,
        account: &str,
        changed: ChangedFields,
    ) -> anyhow::Result<StagingHandle> {
        let path = self.call(|s| Ok(s.path().to_owned())).await?;
        let account = account.to_owned();
        let staging = tokio::task::spawn_blocking(move || {
            let store = Store::open_with(&path, false)?;
            Staging::begin(store, &account, changed).map_err(|e| super::explain(&path, e))
        })
        .await??;
        Ok(StagingHandle {
            inner: Arc::new(Mutex::new(Some(staging))),
        })
    }
}

impl StagingHandle {
    /// Stages one page ([`Staging::stage_page`]). The future borrows nothing, so a page can be
    /// staged while the next one is fetched.
    pub fn stage(
        &self,
        tickets: Vec<Ticket>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + use<> {
        run(self.inner.clone(), move |s| s.stage_page(&tickets))
    }

    /// Forgets what was staged ([`Staging::restart`]).
    pub async fn restart(&self) -> anyhow::Result<()> {
        run(self.inner.clone(), Staging::restart).await
    }

    /// Open tickets the staged sweep did not see ([`Staging::unseen_open`]).
    pub async fn unseen_open(&self) -> anyhow::Result<Vec<i64>> {
        run(self.inner.clone(), |s| s.unseen_open()).await
    }

    /// Applies the sweep, finishing run `run_id` with it ([`Staging::apply_finishing`]), and
    /// answers how many tickets are in the open set it saw (those the sweep listed and those
    /// fetched open) with what it changed.
    pub async fn apply(
        self,
        run_id: i64,
        tally: RunTally,
        now: String,
        fetched_open: Vec<Ticket>,
        departures: Vec<Departure>,
    ) -> anyhow::Result<(u64, ApplyCounts)> {
        tokio::task::spawn_blocking(move || {
            let staging = self
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .context("the sweep was applied already")?;
            let path = staging.store.path.clone();
            let applied = staging.seen_count().and_then(|seen| {
                let counts =
                    staging.apply_finishing(run_id, tally, &now, &fetched_open, &departures)?;
                Ok((seen + fetched_open.len() as u64, counts))
            });
            applied.map_err(|e| super::explain(&path, e))
        })
        .await?
    }
}

/// Runs `f` with the staging on a blocking thread.
async fn run<T, F>(inner: Arc<Mutex<Option<Staging>>>, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Staging) -> anyhow::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
        let staging = guard.as_mut().context("the sweep was applied already")?;
        f(staging).map_err(|e| staging.store.explain(e))
    })
    .await?
}
