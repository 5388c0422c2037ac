//! Slotti's synchronisation bookkeeping: the counters of its webhook deliveries (received,
//! duplicates, refused; in `webhook_counters` under `slotti_…`), the reconciliations
//! (`slotti_reconciles`, the newest [`RECONCILES_KEPT`]), what `status` shows of both, and the
//! look-up of a booking's marker in the outbox (a booking of ours that no visit records yet).
//! See `sql/015_slotti_sync.sql`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::Visits;
use crate::domain::time;

/// How many reconciliations `slotti_reconciles` keeps.
pub const RECONCILES_KEPT: i64 = 100;

/// One reconciliation of `GET bookings` against the visits.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconcileRun {
    /// UTC, RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub ok: bool,
    pub error: Option<String>,
    pub span_from: Option<String>,
    pub span_to: Option<String>,
    pub listed: u64,
    pub ours: u64,
    pub moved: u64,
    pub cancelled: u64,
    pub recovered: u64,
    pub calls: u64,
}

/// What `status` shows of Slotti's synchronisation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SlottiSyncStatus {
    /// The newest reconciliation, successful or not.
    pub last_reconcile: Option<ReconcileRun>,
    /// When the newest successful one finished.
    pub last_reconcile_ok_at: Option<String>,
    /// Visits by their status now.
    pub visits_booked: u64,
    pub visits_moved: u64,
    pub visits_cancelled: u64,
    /// Deliveries recorded (each Shot-ID once).
    pub deliveries_received: u64,
    /// Deliveries whose Shot-ID was recorded before (answered 2xx, nothing recorded).
    pub deliveries_duplicate: u64,
    /// Deliveries refused (authentication, missing headers, size).
    pub deliveries_refused: u64,
    /// Deliveries recorded and not processed yet.
    pub deliveries_pending: u64,
}

fn bump(conn: &rusqlite::Connection, name: &str, by: u64) -> rusqlite::Result<()> {
    if by == 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO webhook_counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, by as i64],
    )?;
    Ok(())
}

impl Visits<'_> {
    /// Records a Slotti delivery before it is answered and counts it (received, or a duplicate
    /// when its Shot-ID was recorded before: then nothing else is written), with `refused`
    /// refusals counted since the last write, in one transaction. True when it was new.
    pub fn record_slotti_delivery_counted(
        &mut self,
        shot_id: &str,
        event: &str,
        payload: &str,
        refused: u64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO slotti_deliveries (shot_id, event, received_at, payload)
             VALUES (?1, ?2, ?3, ?4)",
            params![shot_id, event, time::fmt(now), payload],
        )? == 1;
        let counter = if new {
            "slotti_deliveries_received"
        } else {
            "slotti_duplicates"
        };
        bump(&tx, counter, 1)?;
        bump(&tx, "slotti_refused", refused)?;
        tx.commit()?;
        Ok(new)
    }

    /// Counts refused Slotti deliveries (the listener writes them in batches).
    pub fn count_slotti_refused(&mut self, n: u64) -> anyhow::Result<()> {
        Ok(bump(&self.0.conn, "slotti_refused", n)?)
    }

    /// Records a reconciliation and keeps only the newest `RECONCILES_KEPT` (100).
    pub fn record_reconcile(&mut self, r: &ReconcileRun) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO slotti_reconciles (started_at, finished_at, ok, error, span_from, span_to,
                 listed, ours, moved, cancelled, recovered, calls)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                r.started_at,
                r.finished_at,
                r.ok,
                r.error,
                r.span_from,
                r.span_to,
                r.listed as i64,
                r.ours as i64,
                r.moved as i64,
                r.cancelled as i64,
                r.recovered as i64,
                r.calls as i64
            ],
        )?;
        tx.execute(
            "DELETE FROM slotti_reconciles WHERE id <= (SELECT max(id) FROM slotti_reconciles) - ?1",
            [RECONCILES_KEPT],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// What `status` shows of Slotti's synchronisation.
    pub fn slotti_sync_status(&self) -> anyhow::Result<SlottiSyncStatus> {
        let counter = |name: &str| -> anyhow::Result<u64> {
            Ok(self
                .0
                .conn
                .query_row(
                    "SELECT value FROM webhook_counters WHERE name = ?1",
                    [name],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .unwrap_or(0)
                .max(0) as u64)
        };
        let count = |sql: &str| -> anyhow::Result<u64> {
            Ok(self
                .0
                .conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))?
                .max(0) as u64)
        };
        let visits = |status: &str| -> anyhow::Result<u64> {
            Ok(self
                .0
                .conn
                .query_row(
                    "SELECT count(*) FROM visits WHERE status = ?1",
                    [status],
                    |r| r.get::<_, i64>(0),
                )?
                .max(0) as u64)
        };
        let last_reconcile = self
            .0.conn
            .query_row(
                "SELECT started_at, finished_at, ok, error, span_from, span_to, listed, ours, moved,
                     cancelled, recovered, calls
                 FROM slotti_reconciles ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(ReconcileRun {
                        started_at: r.get(0)?,
                        finished_at: r.get(1)?,
                        ok: r.get(2)?,
                        error: r.get(3)?,
                        span_from: r.get(4)?,
                        span_to: r.get(5)?,
                        listed: r.get::<_, i64>(6)? as u64,
                        ours: r.get::<_, i64>(7)? as u64,
                        moved: r.get::<_, i64>(8)? as u64,
                        cancelled: r.get::<_, i64>(9)? as u64,
                        recovered: r.get::<_, i64>(10)? as u64,
                        calls: r.get::<_, i64>(11)? as u64,
                    })
                },
            )
            .optional()?;
        let last_reconcile_ok_at = self.0.conn.query_row(
            "SELECT max(finished_at) FROM slotti_reconciles WHERE ok = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(SlottiSyncStatus {
            last_reconcile,
            last_reconcile_ok_at,
            visits_booked: visits("booked")?,
            visits_moved: visits("moved")?,
            visits_cancelled: visits("cancelled")?,
            deliveries_received: counter("slotti_deliveries_received")?,
            deliveries_duplicate: counter("slotti_duplicates")?,
            deliveries_refused: counter("slotti_refused")?,
            deliveries_pending: count(
                "SELECT count(*) FROM slotti_deliveries WHERE processed_at IS NULL",
            )?,
        })
    }

    /// The `(account, ticket)` of the outbox row that carries `marker` (the booking action
    /// whose booking Slotti shows), if any.
    pub fn ticket_of_marker(&self, marker: &str) -> anyhow::Result<Option<(String, i64)>> {
        Ok(self
            .0
            .conn
            .query_row(
                "SELECT account, ticket_id FROM outbox
                 WHERE marker = ?1 AND ticket_id IS NOT NULL ORDER BY id LIMIT 1",
                [marker],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
