//! Read-only questions the commands ask of the store: which tickets are mirrored, and how
//! each account is doing.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::mirror::OPEN_SET;
use super::{Meter, Mirror, Runs};

/// Which tickets `huoltosync tasks` lists.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub account: Option<String>,
    /// A state name, matched case-insensitively.
    pub state: Option<String>,
    /// Also tickets that left the open set.
    pub all: bool,
}

/// A mirrored ticket as the commands show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TicketRow {
    pub account: String,
    pub id: i64,
    pub state: String,
    pub title: Option<String>,
    pub open: bool,
    pub assignee_id: Option<i64>,
    pub cost_centre_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub urgency: Option<String>,
    pub remote_modified: Option<String>,
    pub first_seen: String,
    pub last_changed: String,
    pub left_at: Option<String>,
    pub left_reason: Option<String>,
    /// The state our queued actions will bring it to, when any wait (a dead-lettered one
    /// waits for a dispatcher, not for delivery: it does not count).
    pub pending_state: Option<String>,
    /// Its live visit (booked or moved) that has not ended, if any.
    pub next_visit: Option<super::NextVisit>,
    /// The site's address, as the Tampuuri module parsed it.
    pub address: Option<String>,
    pub description: Option<String>,
    /// Who reported it (personal data: purged with its retention). Not in `tasks --json`.
    #[serde(skip)]
    pub reporter: crate::domain::model::Reporter,
}

/// The last sync run of an account.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub pages: u32,
    pub api_calls: u64,
    pub new: u64,
    pub changed: u64,
    pub gone: u64,
    pub error: Option<String>,
}

/// How one account is doing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountStatus {
    pub account: String,
    pub last_run: Option<RunInfo>,
    /// When the last successful sync finished: the mirror's open set was confirmed then.
    pub last_success: Option<String>,
    pub open_tickets: u64,
    pub calls_today: u64,
    pub calls_this_month: u64,
    /// Calls today by endpoint.
    pub calls_by_endpoint_today: Vec<(String, u64)>,
    /// The last reconciliation sweep (webhooks on): tickets it found new or changed, which
    /// means their webhook deliveries were missed.
    pub last_reconcile_found: Option<u64>,
    /// Actions waiting in the outbox.
    pub outbox_pending: u64,
    /// Dead-lettered actions: they need an operator (`huoltosync outbox --failed`).
    pub dead_letters: u64,
}

/// The calls metered under one key of `api_calls`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallsOf {
    pub calls_today: u64,
    pub calls_this_month: u64,
    pub calls_by_endpoint_today: Vec<(String, u64)>,
}

impl Mirror<'_> {
    /// Mirrored tickets, by account and id.
    pub fn tickets(&self, f: &TicketFilter) -> anyhow::Result<Vec<TicketRow>> {
        let mut stmt = self.0.conn.prepare_cached(&format!(
            "{}
             WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR state = ?2 COLLATE NOCASE) AND (?3 OR open = 1)
             ORDER BY account, id",
            super::api::TICKET_SELECT
        ))?;
        let rows = stmt
            .query_map(params![f.account, f.state, f.all], super::api::ticket_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

impl Runs<'_> {
    /// The status of each named account; `day` and `month` are Helsinki `YYYY-MM-DD` and
    /// `YYYY-MM`.
    pub fn account_status(
        &self,
        accounts: &[String],
        day: &str,
        month: &str,
    ) -> anyhow::Result<Vec<AccountStatus>> {
        let mut last_run = self.0.conn.prepare_cached(
            "SELECT id, started_at, finished_at, outcome, pages, api_calls, new_count, changed_count, gone_count, error
             FROM sync_runs WHERE account = ?1 ORDER BY id DESC LIMIT 1",
        )?;
        let mut last_ok = self.0.conn.prepare_cached(
            "SELECT finished_at FROM sync_runs WHERE account = ?1 AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
        )?;
        let mut open = self
            .0
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM tickets WHERE {OPEN_SET}"))?;
        let mut calls = self.0.conn.prepare_cached(
            "SELECT coalesce(sum(CASE WHEN day = ?2 THEN calls END), 0), coalesce(sum(calls), 0)
             FROM api_calls WHERE account = ?1 AND substr(day, 1, 7) = ?3",
        )?;
        let mut out = Vec::new();
        for account in accounts {
            let run = last_run
                .query_row([account], |r| {
                    Ok(RunInfo {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        outcome: r.get(3)?,
                        pages: r.get(4)?,
                        api_calls: r.get(5)?,
                        new: r.get(6)?,
                        changed: r.get(7)?,
                        gone: r.get(8)?,
                        error: r.get(9)?,
                    })
                })
                .optional()?;
            let (calls_today, calls_this_month) =
                calls.query_row(params![account, day, month], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let calls_by_endpoint_today = {
                let mut st = self.0.conn.prepare_cached("SELECT endpoint, calls FROM api_calls WHERE account = ?1 AND day = ?2 ORDER BY endpoint")?;
                st.query_map(params![account, day], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            let (outbox_pending, dead_letters) =
                super::outbox::outbox_counts(&self.0.conn, account)?;
            out.push(AccountStatus {
                account: account.clone(),
                last_run: run,
                last_success: last_ok
                    .query_row([account], |r| r.get(0))
                    .optional()?
                    .flatten(),
                open_tickets: open.query_row([account], |r| r.get(0))?,
                calls_today,
                calls_this_month,
                calls_by_endpoint_today,
                last_reconcile_found: self
                    .0.conn
                    .query_row(
                        "SELECT new_count + changed_count FROM sync_runs WHERE account = ?1 AND trigger = 'reconcile' AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                        [account],
                        |r| r.get(0),
                    )
                    .optional()?,
                outbox_pending,
                dead_letters,
            });
        }
        Ok(out)
    }

    /// The API calls of each account's last successful sync run.
    pub fn last_run_calls(&self, account: &str) -> anyhow::Result<Option<u64>> {
        Ok(self
            .0.conn
            .query_row(
                "SELECT api_calls FROM sync_runs WHERE account = ?1 AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                [account],
                |r| r.get(0),
            )
            .optional()?)
    }
}

impl Meter<'_> {
    /// The calls metered under `account` (any key of `api_calls`, such as Slotti's): today,
    /// this month, and today's by endpoint; `day` and `month` as for [`Runs::account_status`].
    pub fn calls_of(&self, account: &str, day: &str, month: &str) -> anyhow::Result<CallsOf> {
        let (today, this_month) = self.0.conn.query_row(
            "SELECT coalesce(sum(CASE WHEN day = ?2 THEN calls END), 0), coalesce(sum(calls), 0)
             FROM api_calls WHERE account = ?1 AND substr(day, 1, 7) = ?3",
            params![account, day, month],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut st = self.0.conn.prepare_cached(
            "SELECT endpoint, calls FROM api_calls WHERE account = ?1 AND day = ?2 ORDER BY endpoint",
        )?;
        let by_endpoint_today = st
            .query_map(params![account, day], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CallsOf {
            calls_today: today,
            calls_this_month: this_month,
            calls_by_endpoint_today: by_endpoint_today,
        })
    }

    /// API calls per account and Helsinki day within a month (`YYYY-MM`), for cost reports.
    pub fn calls_in_month(&self, month: &str) -> anyhow::Result<Vec<(String, String, u64)>> {
        let mut st = self.0.conn.prepare_cached(
            "SELECT account, day, sum(calls) FROM api_calls WHERE substr(day, 1, 7) = ?1 GROUP BY account, day ORDER BY account, day",
        )?;
        let v = st
            .query_map([month], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }
}
