//! What `status` judges and shows: each account's health (stale or never synced, dead letters),
//! the webhook figures, and the outgoing event subscribers. The `status` command prints it, the
//! HTTP API serves it (`GET /api/v1/status`), both from [`status`]; and the month's cost from
//! the config and the store ([`cost_report`]), for `cost` and `GET /api/v1/cost`.

use serde::Serialize;

use crate::config::Config;
use crate::domain::time;
use crate::store::{AccountStatus, Store, SubscriberRow, WebhookStatus};

/// An account's status with what is wrong with it, as `status` shows it.
#[derive(Debug, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub status: AccountStatus,
    pub last_success_age_secs: Option<i64>,
    /// Why `status` exits non-zero for this account; empty when it is healthy.
    pub problems: Vec<String>,
}

/// Everything `status` reports.
#[derive(Debug)]
pub struct Status {
    pub accounts: Vec<Shown>,
    /// With `[webhook]` on.
    pub webhooks: Option<WebhookStatus>,
    /// With `[[api.subscribers]]` configured.
    pub subscribers: Option<Vec<SubscriberShown>>,
    /// With `[slotti]` configured: Slotti's API calls (metered apart, never billed by `cost`),
    /// its reconciliations, visits and webhook deliveries.
    pub slotti: Option<SlottiShown>,
}

/// Slotti as `status` shows it.
#[derive(Debug, Serialize)]
pub struct SlottiShown {
    #[serde(flatten)]
    pub calls: crate::store::CallsOf,
    #[serde(flatten)]
    pub sync: crate::store::SlottiSyncStatus,
    /// Seconds since the last successful reconciliation finished.
    pub last_reconcile_ok_age_secs: Option<i64>,
}

impl Status {
    /// No account has a problem and no subscriber is dead.
    pub fn healthy(&self) -> bool {
        self.accounts.iter().all(|s| s.problems.is_empty())
            && self
                .subscribers
                .iter()
                .flatten()
                .all(|s| s.status != "dead")
    }

    /// What `status --json` prints: the accounts alone, or with webhooks and subscribers on,
    /// `{"accounts", "webhooks"?, "subscribers"?, "slotti"?}`.
    pub fn to_json(&self) -> serde_json::Value {
        if self.webhooks.is_none() && self.subscribers.is_none() && self.slotti.is_none() {
            return serde_json::json!(self.accounts);
        }
        let mut all = serde_json::json!({ "accounts": self.accounts });
        if let Some(w) = &self.webhooks {
            all["webhooks"] = serde_json::json!(w);
        }
        if let Some(s) = &self.subscribers {
            all["subscribers"] = serde_json::json!(s);
        }
        if let Some(s) = &self.slotti {
            all["slotti"] = serde_json::json!(s);
        }
        all
    }
}

/// Reads and judges the status at `now`.
pub fn status(
    config: &Config,
    store: &mut Store,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Status> {
    let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let statuses =
        store
            .runs()
            .account_status(&names, &time::local_day(now), &time::local_month(now))?;
    let stale_after = chrono::Duration::from_std(config.service.stale_after)?;
    let shown: Vec<Shown> = statuses
        .into_iter()
        .map(|s| {
            let age = s
                .last_success
                .as_deref()
                .and_then(time::parse)
                .map(|t| now - t);
            let mut problems = Vec::new();
            match age {
                None => problems.push("never synced successfully".to_owned()),
                Some(a) if a > stale_after => problems.push(format!(
                    "last successful sync {} ago, over the {} threshold",
                    time::age(a),
                    time::age(stale_after)
                )),
                _ => {}
            }
            if s.dead_letters > 0 {
                problems.push(format!("{} dead-lettered action(s)", s.dead_letters));
            }
            Shown {
                status: s,
                last_success_age_secs: age.map(|a| a.num_seconds()),
                problems,
            }
        })
        .collect();
    let webhooks = match &config.webhook {
        Some(_) => Some(store.webhook().webhook_status()?),
        None => None,
    };
    // Outgoing events: a dead subscriber is a problem like a dead letter.
    let subscribers = match config.subscribers.is_empty() {
        true => None,
        false => Some(subscribers_shown(
            config,
            store.subscribers().subscribers()?,
        )),
    };
    let slotti = match &config.slotti {
        Some(_) => {
            let sync = store.visits().slotti_sync_status()?;
            Some(SlottiShown {
                calls: store.meter().calls_of(
                    crate::slotti::METER_ACCOUNT,
                    &time::local_day(now),
                    &time::local_month(now),
                )?,
                last_reconcile_ok_age_secs: sync
                    .last_reconcile_ok_at
                    .as_deref()
                    .and_then(time::parse)
                    .map(|t| (now - t).num_seconds()),
                sync,
            })
        }
        None => None,
    };
    Ok(Status {
        accounts: shown,
        webhooks,
        subscribers,
        slotti,
    })
}

/// A subscriber as `subscribers` and `status` show it: its config and, once the daemon has
/// served it, its row.
#[derive(Debug, Serialize)]
pub struct SubscriberShown {
    pub name: String,
    pub url: String,
    /// `active`, `dead`, `new` (the daemon has not served it yet: it starts at the end of the
    /// feed then), or `unconfigured` (a row left by a subscriber no longer in the config).
    pub status: String,
    pub events: Vec<String>,
    #[serde(flatten)]
    pub row: Option<SubscriberRow>,
}

/// Every configured subscriber, then the rows of subscribers no longer configured.
pub fn subscribers_shown(config: &Config, rows: Vec<SubscriberRow>) -> Vec<SubscriberShown> {
    let mut rows = rows;
    let mut out = Vec::new();
    for s in &config.subscribers {
        let row = rows
            .iter()
            .position(|r| r.name == s.name)
            .map(|i| rows.remove(i));
        out.push(SubscriberShown {
            name: s.name.clone(),
            url: s.url.to_string(),
            status: row.as_ref().map_or("new".into(), |r| r.status.clone()),
            events: s.events.clone().unwrap_or_else(|| vec!["*".into()]),
            row,
        });
    }
    for r in rows {
        out.push(SubscriberShown {
            name: r.name.clone(),
            url: r.url.clone(),
            status: "unconfigured".into(),
            events: Vec::new(),
            row: Some(r),
        });
    }
    out
}

/// What the config says about a month's cost, with each account's calls per poll from the store
/// and the month's `ticks` of the schedules.
pub fn cost_plan(
    config: &Config,
    store: &mut Store,
    ticks: crate::domain::cost::Ticks,
) -> crate::domain::cost::Plan {
    crate::domain::cost::Plan {
        packages: config.pricing.clone(),
        accounts: config
            .accounts
            .iter()
            .map(|a| crate::domain::cost::AccountPlan {
                name: a.name.clone(),
                customer: a.customer.clone(),
                billed: a.billed,
                calls_per_poll: store
                    .runs()
                    .last_run_calls(&a.name)
                    .ok()
                    .flatten()
                    .unwrap_or(1),
            })
            .collect(),
        poll_ticks: ticks.poll,
        reconcile_ticks: ticks.reconcile,
        addon_eur: config.webhook_addon_eur(),
    }
}

/// The month's cost report: the plan from the config and the month's `ticks` of the schedules
/// ([`crate::service::schedule::month_ticks`]), the usage from the store.
pub fn cost_report(
    config: &Config,
    store: &mut Store,
    month: &crate::domain::cost::Month,
    ticks: crate::domain::cost::Ticks,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<crate::domain::cost::CostReport> {
    let plan = cost_plan(config, store, ticks);
    // Slotti's calls are metered in the same table; Tampuuri's packages do not bill them.
    let mut calls = store.meter().calls_in_month(&month.name)?;
    calls.retain(|(account, _, _)| {
        config.slotti.is_none() || account != crate::slotti::METER_ACCOUNT
    });
    let webhook_fetches = crate::domain::cost::account_names(&plan, &calls)
        .into_iter()
        .map(|a| {
            let n = store
                .webhook()
                .webhook_fetches_in_month(&a, &month.name)
                .unwrap_or(0);
            (a, n)
        })
        .collect();
    let usage = crate::domain::cost::Usage {
        calls,
        webhook_fetches,
    };
    Ok(crate::domain::cost::report(month, now, &plan, &usage))
}
