//! Retention: personal data of tickets that left the open set long enough ago is erased
//! everywhere it is stored, and bookkeeping rows older than their retention are deleted (with
//! the change feed's old events and the HTTP API's old Idempotency-Keys).
//! A visit's customer data (its columns and the customer fields of its stored booking) goes
//! when its ticket's personal data goes, or when the visit ended (or was last changed, for a
//! cancelled one) longer ago than the same retention; a Slotti webhook delivery's payload when
//! it was processed and received longer ago than that, the row itself after the retention of
//! webhook events.
//! The daemon's daily purge and `huoltosync purge` both run [`Store::purge`].
//! `secure_delete` (set when the store opens) zeroes the freed bytes, and a WAL checkpoint
//! with TRUNCATE afterwards leaves no old copy in the `-wal` file.

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::Store;
use crate::domain::time;

/// What a purge keeps, and for how long: plain values, so the store needs neither the config
/// nor the API module. The caller builds it (`crate::service::retention::from_config`).
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    /// Personal data of tickets that left the open set longer ago than this is erased, with
    /// the free text of actions, error texts and webhook references as old, the customer data
    /// of visits that ended as long ago, and the payloads of Slotti deliveries processed.
    pub personal_days: u32,
    pub sync_runs_days: u32,
    pub api_calls_days: u32,
    pub outbox_days: u32,
    pub webhook_events_days: u32,
    /// Change-feed events older than this many days are deleted (`[api] feed_retain_days`).
    pub feed_days: u32,
    /// HTTP API Idempotency-Keys claimed longer ago than this are deleted (their answers with
    /// them).
    pub idempotency_keys: std::time::Duration,
    /// Top-level fields of a ticket's raw JSON that hold personal data, removed from
    /// `raw_json` when its personal data is erased.
    pub personal_fields: &'a [&'a str],
    /// Top-level fields of a Slotti booking that hold personal data, removed from a visit's
    /// `raw_json` when its customer data is erased.
    pub booking_personal_fields: &'a [&'a str],
}

/// What a purge erased or deleted (or would, with `dry_run`).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// Tickets whose personal data was erased.
    pub tickets_erased: u64,
    /// Outbox actions whose free text (comments, reasons, descriptions; a booking's resident
    /// and calendar text) was erased.
    pub actions_erased: u64,
    /// Error texts erased from old sync runs and actions.
    pub errors_erased: u64,
    /// Webhook events whose `ReferenceJson` was erased.
    pub events_erased: u64,
    /// Visits whose customer data was erased.
    pub visits_erased: u64,
    /// Slotti webhook deliveries whose payload was erased.
    pub deliveries_erased: u64,
    /// Bookkeeping rows deleted: sync runs, API-call days, finished outbox actions, old
    /// webhook events.
    pub rows_deleted: u64,
    /// Change-feed events deleted (older than `[api] feed_retain_days`).
    pub feed_events_deleted: u64,
    /// HTTP API Idempotency-Keys deleted (claimed over 24 hours ago).
    pub idempotency_keys_deleted: u64,
}

impl Store {
    /// Erases and deletes what retention says; with `dry_run`, only counts.
    pub fn purge(
        &mut self,
        retention: &Retention<'_>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> anyhow::Result<PurgeReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut r = PurgeReport {
            dry_run,
            ..Default::default()
        };
        erase_personal(&tx, retention, now, &mut r)?;
        delete_old(&tx, retention, now, &mut r)?;
        if dry_run {
            tx.rollback()?;
            return Ok(r);
        }
        tx.commit()?;
        // Old page images of the erased rows may still sit in the WAL: fold it in and truncate.
        // A purge that changed nothing writes nothing (an idle daemon leaves the files alone).
        if r.tickets_erased
            + r.actions_erased
            + r.errors_erased
            + r.events_erased
            + r.visits_erased
            + r.deliveries_erased
            + r.rows_deleted
            + r.feed_events_deleted
            + r.idempotency_keys_deleted
            > 0
        {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(r)
    }
}

/// The day `days` before `now`, as stored.
fn ago(now: DateTime<Utc>, days: u32) -> String {
    time::fmt(now - chrono::Duration::days(days.into()))
}

/// Erases the personal data whose retention has ended: tickets' reporters and raw fields,
/// visits' customers, Slotti deliveries' payloads, finished actions' texts, webhook events'
/// references (and deletes the Slotti deliveries and webhook events kept long enough).
fn erase_personal(
    tx: &rusqlite::Transaction<'_>,
    retention: &Retention<'_>,
    now: DateTime<Utc>,
    r: &mut PurgeReport,
) -> anyhow::Result<()> {
    let ago = |days: u32| ago(now, days);
    let cutoff = ago(retention.personal_days);
    let stamp = time::fmt(now);
    // The fields' JSON paths are bound as parameters `?3, ?4, …`, never spliced into SQL.
    let paths: Vec<String> = retention
        .personal_fields
        .iter()
        .map(|f| format!("$.{f}"))
        .collect();
    let removals: String = (3..3 + paths.len()).map(|i| format!(", ?{i}")).collect();
    r.tickets_erased = tx.execute(
        &format!(
            "UPDATE tickets SET reporter_name = NULL, reporter_phone = NULL, reporter_email = NULL,
                 raw_json = json_remove(raw_json{removals}), personal_erased_at = ?2
             WHERE open = 0 AND left_at < ?1 AND personal_erased_at IS NULL"
        ),
        rusqlite::params_from_iter(
            [&cutoff, &stamp]
                .into_iter()
                .chain(&paths)
                .map(|v| v as &dyn rusqlite::ToSql),
        ),
    )? as u64;
    // After the tickets: a visit's customer data goes with its ticket's personal data.
    let booking_paths: Vec<String> = retention
        .booking_personal_fields
        .iter()
        .map(|f| format!("$.{f}"))
        .collect();
    let booking_removals: String = (3..3 + booking_paths.len())
        .map(|i| format!(", ?{i}"))
        .collect();
    r.visits_erased = tx.execute(
        &format!(
            "UPDATE visits SET customer_name = NULL, customer_phone = NULL, customer_email = NULL,
                 raw_json = CASE WHEN json_valid(raw_json) THEN json_remove(raw_json{booking_removals}) ELSE '{{}}' END,
                 personal_erased_at = ?2
             WHERE personal_erased_at IS NULL
               AND (max(end_at, updated_at) < ?1
                    OR EXISTS (SELECT 1 FROM tickets t WHERE t.account = visits.account
                               AND t.id = visits.ticket_id AND t.personal_erased_at IS NOT NULL))"
        ),
        rusqlite::params_from_iter(
            [&cutoff, &stamp]
                .into_iter()
                .chain(&booking_paths)
                .map(|v| v as &dyn rusqlite::ToSql),
        ),
    )? as u64;
    r.deliveries_erased = tx.execute(
        "UPDATE slotti_deliveries SET payload = NULL
         WHERE processed_at IS NOT NULL AND received_at < ?1 AND payload IS NOT NULL",
        [&cutoff],
    )? as u64;
    r.rows_deleted += tx.execute(
        "DELETE FROM slotti_deliveries WHERE processed_at IS NOT NULL AND received_at < ?1",
        [ago(retention.webhook_events_days)],
    )? as u64;
    r.actions_erased = tx.execute(
        "UPDATE outbox SET erased_at = ?2, last_error = NULL,
             payload = json_replace(payload, '$.comment', json('null'), '$.reason', '[erased]',
                                    '$.description', '[erased]', '$.details', json('null'),
                                    '$.customer', json('null'), '$.info', '[erased]')
         WHERE status <> 'pending' AND created_at < ?1 AND erased_at IS NULL",
        params![cutoff, stamp],
    )? as u64;
    r.events_erased = tx.execute(
        "UPDATE webhook_events SET reference_json = NULL, last_error = NULL
         WHERE received_at < ?1 AND status <> 'pending' AND reference_json IS NOT NULL",
        [&cutoff],
    )? as u64;
    r.rows_deleted += tx.execute(
        "DELETE FROM webhook_events WHERE status <> 'pending' AND received_at < ?1",
        [ago(retention.webhook_events_days)],
    )? as u64;
    Ok(())
}

/// Erases old sync errors and deletes the bookkeeping rows kept long enough: sync runs, API-call
/// days, finished outbox actions, feed events, Idempotency-Keys.
fn delete_old(
    tx: &rusqlite::Transaction<'_>,
    retention: &Retention<'_>,
    now: DateTime<Utc>,
    r: &mut PurgeReport,
) -> anyhow::Result<()> {
    let ago = |days: u32| ago(now, days);
    let cutoff = ago(retention.personal_days);
    r.errors_erased = tx.execute(
        "UPDATE sync_runs SET error = '[erased]' WHERE started_at < ?1 AND error IS NOT NULL AND error <> '[erased]'",
        [&cutoff],
    )? as u64;
    r.rows_deleted += tx.execute(
        "DELETE FROM sync_runs WHERE started_at < ?1 AND outcome <> 'running'",
        [ago(retention.sync_runs_days)],
    )? as u64;
    r.rows_deleted += tx.execute(
        "DELETE FROM api_calls WHERE day < ?1",
        [time::local_day(
            now - chrono::Duration::days(retention.api_calls_days.into()),
        )],
    )? as u64;
    r.rows_deleted += tx.execute(
        "DELETE FROM outbox WHERE status IN ('delivered', 'cancelled') AND created_at < ?1",
        [ago(retention.outbox_days)],
    )? as u64;
    r.feed_events_deleted =
        tx.execute("DELETE FROM feed WHERE at < ?1", [ago(retention.feed_days)])? as u64;
    let keys_age = chrono::Duration::from_std(retention.idempotency_keys)?;
    r.idempotency_keys_deleted = tx.execute(
        "DELETE FROM api_idempotency WHERE created_at < ?1",
        [time::fmt(now - keys_age)],
    )? as u64;
    Ok(())
}
