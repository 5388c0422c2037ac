//! Webhook events: recorded durably before a delivery is answered, then processed in order
//! per ticket, one fetch per ticket however many events name it.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::Webhook;
use super::mirror::THIS_TICKET;

/// One notification as recorded.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub key: i64,
    pub account: Option<String>,
    pub action: Option<String>,
    pub reference_id: Option<i64>,
    pub reference_json: Option<String>,
    pub event_time: Option<String>,
}

/// A pending event for processing.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: i64,
    pub account: Option<String>,
    pub action: Option<String>,
    pub reference_id: Option<i64>,
    pub reference_json: Option<String>,
    /// When it was recorded (`time::fmt`).
    pub received_at: String,
    /// Failed fetches so far.
    pub attempts: u32,
    /// After a failed fetch: not to be fetched before this (`time::fmt`).
    pub next_try_at: Option<String>,
}

/// What `status` shows about webhooks.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookStatus {
    pub deliveries_received: u64,
    pub events_pending: u64,
    /// Events whose fetch failed permanently or on every retry: the next reconciliation sweep
    /// covers their tickets.
    pub events_parked: u64,
    /// Parked events settled by a later successful sync of their account.
    pub events_reconciled: u64,
    /// Events about tickets that concern us (fetched).
    pub events_relevant: u64,
    /// Events about other contractors' tickets (skipped without a fetch).
    pub events_irrelevant: u64,
    /// Events of other kinds or for accounts not in the config.
    pub events_ignored: u64,
    pub fetches: u64,
}

impl Webhook<'_> {
    /// Records a delivery's notifications in one transaction; answers how many were new (a
    /// redelivered notification is not recorded twice).
    pub fn record_delivery(&mut self, now: &str, events: &[NewEvent]) -> anyhow::Result<u64> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut new = 0;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_events (event_key, received_at, account, action, reference_id, reference_json, event_time, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
            )?;
            for e in events {
                new += ins.execute(params![
                    e.key,
                    now,
                    e.account,
                    e.action,
                    e.reference_id,
                    e.reference_json,
                    e.event_time
                ])? as u64;
            }
            bump(&tx, "deliveries_received", 1)?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Counts tickets fetched because of webhook events.
    pub fn count_fetches(&mut self, n: u64) -> anyhow::Result<()> {
        bump(&self.0.conn, "fetches", n as i64)
    }

    /// Pending events, oldest first.
    pub fn pending_events(&self, limit: u32) -> anyhow::Result<Vec<PendingEvent>> {
        let mut s = self.0.conn.prepare_cached(
            "SELECT id, account, action, reference_id, reference_json, received_at, attempts, next_try_at FROM webhook_events WHERE status = 'pending' ORDER BY id LIMIT ?1",
        )?;
        let v = s
            .query_map([limit], |r| {
                Ok(PendingEvent {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    action: r.get(2)?,
                    reference_id: r.get(3)?,
                    reference_json: r.get(4)?,
                    received_at: r.get(5)?,
                    attempts: r.get(6)?,
                    next_try_at: r.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// How many pending events may be processed at `now` (`time::fmt`): those not waiting
    /// for a retry after a failed fetch.
    pub fn due_event_count(&self, now: &str) -> anyhow::Result<u64> {
        Ok(self.0.conn.query_row(
            "SELECT count(*) FROM webhook_events WHERE status = 'pending' AND (next_try_at IS NULL OR next_try_at <= ?1)",
            [now],
            |r| r.get(0),
        )?)
    }

    /// Marks events processed: `fetched`, `skipped` or `ignored`, with a reason.
    pub fn finish_events(
        &mut self,
        ids: &[i64],
        status: &str,
        reason: Option<&str>,
        now: &str,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut up = tx.prepare_cached("UPDATE webhook_events SET status = ?2, reason = ?3, processed_at = ?4 WHERE id = ?1")?;
            for id in ids {
                up.execute(params![id, status, reason, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a failed fetch for events: with `retry_at`, they stay pending until then, with
    /// `attempts` failures so far; without, they are parked (status `parked`, `reason`).
    pub fn fail_events(
        &mut self,
        ids: &[i64],
        error: &str,
        attempts: u32,
        retry_at: Option<&str>,
        reason: &str,
        now: &str,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut up = tx.prepare_cached(
                "UPDATE webhook_events SET attempts = ?2, last_error = ?3, next_try_at = ?4,
                     status = CASE WHEN ?4 IS NULL THEN 'parked' ELSE status END,
                     reason = CASE WHEN ?4 IS NULL THEN ?5 ELSE reason END,
                     processed_at = CASE WHEN ?4 IS NULL THEN ?6 ELSE processed_at END
                 WHERE id = ?1",
            )?;
            for id in ids {
                up.execute(params![id, attempts, error, retry_at, reason, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Tickets fetched for webhook events of `account` in a month (`YYYY-MM`, by receipt time).
    pub fn webhook_fetches_in_month(&self, account: &str, month: &str) -> anyhow::Result<u64> {
        Ok(self.0.conn.query_row(
            "SELECT count(DISTINCT reference_id || '@' || processed_at) FROM webhook_events
             WHERE account = ?1 AND status = 'fetched' AND substr(received_at, 1, 7) = ?2",
            params![account, month],
            |r| r.get(0),
        )?)
    }

    /// Whether ticket `id` of `account` is in our open set.
    pub fn holds_open(&self, account: &str, id: i64) -> anyhow::Result<bool> {
        Ok(self
            .0
            .conn
            .query_row(
                &format!("SELECT 1 FROM tickets WHERE {THIS_TICKET} AND open = 1"),
                params![account, id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether the mirror holds ticket `id` of `account` (open or not).
    pub fn holds(&self, account: &str, id: i64) -> anyhow::Result<bool> {
        Ok(self
            .0
            .conn
            .query_row(
                &format!("SELECT 1 FROM tickets WHERE {THIS_TICKET}"),
                params![account, id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Fetches of tickets the mirror does not hold made for `account` at or after `since`
    /// (`time::fmt`): what counts against `[webhook] max_fetches_per_minute`.
    pub fn unheld_fetches_since(&self, account: &str, since: &str) -> anyhow::Result<u64> {
        Ok(self.0.conn.query_row(
            "SELECT count(*) FROM webhook_unheld_fetches WHERE account = ?1 AND fetched_at >= ?2",
            params![account, since],
            |r| r.get(0),
        )?)
    }

    /// Records a fetch of a ticket the mirror does not hold, before it is sent; forgets those
    /// older than `forget_before`.
    pub fn count_unheld_fetch(
        &mut self,
        account: &str,
        now: &str,
        forget_before: &str,
    ) -> anyhow::Result<()> {
        let tx = self
            .0
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM webhook_unheld_fetches WHERE fetched_at < ?1",
            [forget_before],
        )?;
        tx.execute(
            "INSERT INTO webhook_unheld_fetches (account, fetched_at) VALUES (?1, ?2)",
            params![account, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The accounts with events parked with `reason` (left to a reconciliation sweep), and
    /// when the last sync of each started (`None`: never).
    pub fn sweeps_wanted(&self, reason: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let mut s = self.0.conn.prepare_cached(
            "SELECT e.account, (SELECT max(started_at) FROM sync_runs r WHERE r.account = e.account)
             FROM webhook_events e WHERE e.status = 'parked' AND e.reason = ?1 AND e.account IS NOT NULL
             GROUP BY e.account ORDER BY e.account",
        )?;
        let v = s
            .query_map([reason], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Webhook figures for `status`.
    pub fn webhook_status(&self) -> anyhow::Result<WebhookStatus> {
        let counter = |name: &str| -> anyhow::Result<u64> {
            Ok(self
                .0
                .conn
                .query_row(
                    "SELECT value FROM webhook_counters WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0))
        };
        let status = |s: &str| -> anyhow::Result<u64> {
            Ok(self.0.conn.query_row(
                "SELECT count(*) FROM webhook_events WHERE status = ?1",
                [s],
                |r| r.get(0),
            )?)
        };
        Ok(WebhookStatus {
            deliveries_received: counter("deliveries_received")?,
            events_pending: status("pending")?,
            events_parked: status("parked")?,
            events_reconciled: status("reconciled")?,
            events_relevant: status("fetched")?,
            events_irrelevant: status("skipped")?,
            events_ignored: status("ignored")?,
            fetches: counter("fetches")?,
        })
    }
}

fn bump(conn: &rusqlite::Connection, name: &str, by: i64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO webhook_counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, by],
    )?;
    Ok(())
}
