//! What the integration costs in billed Tampuuri calls: per account, per customer (the
//! property manager's contract, whose API package covers all of its integrations), projected to
//! the month's end, priced under each package, and what the configured schedule will cost.
//! Days and months are Europe/Helsinki calendar days.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Europe::Helsinki;
use serde::Serialize;

use crate::config::{Config, Package};

/// The note every report carries.
pub const NOTE: &str = "These are huoltosync's calls only: the customer's package also pays for its other integrations' calls, so its real bill is at least this.";

#[derive(Debug, Serialize, PartialEq)]
pub struct CostReport {
    pub month: String,
    pub days_in_month: u32,
    /// Helsinki days of the month elapsed at the time of the report (the whole month for a past one).
    pub days_elapsed: f64,
    pub accounts: Vec<AccountCost>,
    pub customers: Vec<CustomerCost>,
    pub total_calls: u64,
    pub total_projected_calls: u64,
    pub note: &'static str,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AccountCost {
    pub account: String,
    pub customer: String,
    pub billed: bool,
    pub calls: u64,
    pub projected_calls: u64,
    /// Calls of the last successful poll (a stand-in for every poll).
    pub calls_per_poll: u64,
    /// The configured schedule's polls in this month times `calls_per_poll`.
    pub schedule_calls_per_month: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CustomerCost {
    pub customer: String,
    pub accounts: Vec<String>,
    pub calls: u64,
    pub projected_calls: u64,
    pub schedule_calls_per_month: u64,
    /// The projected month under each package, the cheapest marked.
    pub projected_prices: Vec<Price>,
    /// The configured schedule's month under each package.
    pub schedule_prices: Vec<Price>,
    /// Polling only against webhooks plus a slower reconciliation sweep.
    pub webhooks: WebhookComparison,
}

/// Whether the webhook add-on pays off for a customer.
#[derive(Debug, Serialize, PartialEq)]
pub struct WebhookComparison {
    /// Calls a month polling on `[schedule] poll`, and the cheapest package's price for them.
    pub polling_calls_per_month: u64,
    pub polling_eur: f64,
    /// Calls a month with webhooks: reconciliation sweeps on `[webhook] reconcile` plus one
    /// fetch per ticket event (this month's rate), and the cheapest package's price plus the
    /// add-on.
    pub webhook_calls_per_month: u64,
    pub webhook_eur: f64,
    pub addon_eur: f64,
    pub webhooks_cheaper: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Price {
    pub package: String,
    pub eur: f64,
    pub cheapest: bool,
}

fn prices(packages: &[Package], calls: u64) -> Vec<Price> {
    let mut v: Vec<Price> = packages
        .iter()
        .map(|p| Price {
            package: p.name.clone(),
            eur: (p.price(calls) * 100.0).round() / 100.0,
            cheapest: false,
        })
        .collect();
    if let Some(min) = v.iter().map(|p| p.eur).reduce(f64::min)
        && let Some(p) = v.iter_mut().find(|p| p.eur == min)
    {
        p.cheapest = true;
    }
    v
}

/// The first day of a `YYYY-MM` month and the number of its days.
pub fn month_bounds(month: &str) -> anyhow::Result<(NaiveDate, u32)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("--month {month:?} is not a month like 2026-11"))?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .ok_or_else(|| anyhow::anyhow!("--month {month:?} is out of the calendar's range"))?;
    Ok((first, (next - first).num_days() as u32))
}

/// Builds the report from the month's calls per (account, day) and each account's calls per
/// poll, as of `now`.
pub fn report(
    config: &Config,
    month: &str,
    now: DateTime<Utc>,
    calls: &[(String, String, u64)],
    calls_per_poll: &dyn Fn(&str) -> u64,
    webhook_fetches: &dyn Fn(&str) -> u64,
) -> anyhow::Result<CostReport> {
    let (first, days) = month_bounds(month)?;
    let local_now = now.with_timezone(&Helsinki);
    let this_month = crate::time::local_month(now);
    let days_elapsed = match month.cmp(this_month.as_str()) {
        std::cmp::Ordering::Less => days as f64,
        std::cmp::Ordering::Greater => 0.0,
        std::cmp::Ordering::Equal => {
            let start = first
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_local_timezone(Helsinki)
                .earliest()
                .expect("a Helsinki midnight");
            ((local_now - start).num_seconds() as f64 / 86_400.0).clamp(0.0, days as f64)
        }
    };
    let helsinki_midnight = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_local_timezone(Helsinki)
            .earliest()
            .expect("a Helsinki midnight")
            .with_timezone(&Utc)
    };
    let month_start_utc = helsinki_midnight(first);
    // The month as Helsinki has it: an hour short in March, an hour long in October.
    let month_span = helsinki_midnight(first + chrono::Days::new(days.into())) - month_start_utc;
    let ticks = config
        .schedule
        .poll
        .ticks_within(month_start_utc, month_span);
    let reconcile_default =
        crate::schedule::Schedule::parse("0 0 * * * *", config.schedule.timezone)
            .expect("a valid schedule");
    let reconcile = config
        .webhook
        .as_ref()
        .map_or(&reconcile_default, |w| &w.reconcile);
    let reconcile_ticks = reconcile.ticks_within(month_start_utc, month_span);
    let addon_eur = config.webhook.as_ref().map_or(500.0, |w| w.addon_eur);
    let scale = |n: u64| {
        if days_elapsed > 0.0 && days_elapsed < days as f64 {
            (n as f64 / days_elapsed * days as f64).round() as u64
        } else {
            n
        }
    };
    // Accounts in the config, plus any the store has calls for that the config no longer has.
    let mut names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    for (a, _, _) in calls {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    let accounts: Vec<AccountCost> = names
        .iter()
        .map(|name| {
            let acc = config.account(name);
            let used: u64 = calls
                .iter()
                .filter(|(a, _, _)| a == name)
                .map(|(_, _, n)| n)
                .sum();
            let projected = if days_elapsed >= days as f64 || days_elapsed <= 0.0 {
                used
            } else {
                (used as f64 / days_elapsed * days as f64).round() as u64
            };
            let per_poll = if acc.is_some() {
                calls_per_poll(name).max(1)
            } else {
                0
            };
            AccountCost {
                account: name.clone(),
                customer: acc.map_or_else(|| name.clone(), |a| a.customer.clone()),
                billed: acc.is_none_or(|a| a.billed),
                calls: used,
                projected_calls: projected,
                calls_per_poll: per_poll,
                schedule_calls_per_month: ticks * per_poll,
            }
        })
        .collect();
    let mut customers: Vec<CustomerCost> = Vec::new();
    for a in accounts.iter().filter(|a| a.billed) {
        let c = match customers.iter_mut().position(|c| c.customer == a.customer) {
            Some(i) => &mut customers[i],
            None => {
                customers.push(CustomerCost {
                    customer: a.customer.clone(),
                    accounts: vec![],
                    calls: 0,
                    projected_calls: 0,
                    schedule_calls_per_month: 0,
                    projected_prices: vec![],
                    schedule_prices: vec![],
                    webhooks: WebhookComparison {
                        polling_calls_per_month: 0,
                        polling_eur: 0.0,
                        webhook_calls_per_month: 0,
                        webhook_eur: 0.0,
                        addon_eur,
                        webhooks_cheaper: false,
                    },
                });
                customers.last_mut().expect("just pushed")
            }
        };
        c.accounts.push(a.account.clone());
        c.calls += a.calls;
        c.projected_calls += a.projected_calls;
        c.schedule_calls_per_month += a.schedule_calls_per_month;
        c.webhooks.webhook_calls_per_month +=
            reconcile_ticks * a.calls_per_poll + scale(webhook_fetches(&a.account));
    }
    for c in &mut customers {
        c.projected_prices = prices(&config.pricing, c.projected_calls);
        c.schedule_prices = prices(&config.pricing, c.schedule_calls_per_month);
        let cheapest = |calls: u64| {
            prices(&config.pricing, calls)
                .iter()
                .map(|p| p.eur)
                .fold(f64::INFINITY, f64::min)
        };
        let w = &mut c.webhooks;
        w.polling_calls_per_month = c.schedule_calls_per_month;
        w.polling_eur = cheapest(w.polling_calls_per_month);
        w.webhook_eur = ((cheapest(w.webhook_calls_per_month) + addon_eur) * 100.0).round() / 100.0;
        w.webhooks_cheaper = w.webhook_eur < w.polling_eur;
    }
    Ok(CostReport {
        month: month.to_owned(),
        days_in_month: days,
        days_elapsed: (days_elapsed * 100.0).round() / 100.0,
        total_calls: accounts.iter().map(|a| a.calls).sum(),
        total_projected_calls: accounts.iter().map(|a| a.projected_calls).sum(),
        accounts,
        customers,
        note: NOTE,
    })
}

/// The report as text for an operator. A month that is over shows its calls, not a projection.
pub fn render(r: &CostReport) -> String {
    let complete = r.days_elapsed >= r.days_in_month as f64;
    let mut out = if complete {
        format!("API calls in {} (the whole month):\n", r.month)
    } else {
        format!(
            "API calls in {} (day {:.1} of {}):\n",
            r.month, r.days_elapsed, r.days_in_month
        )
    };
    let projected = |n: u64| {
        if complete {
            String::new()
        } else {
            format!(", {n:>7} projected")
        }
    };
    for a in &r.accounts {
        out.push_str(&format!(
            "  {:<20} customer {:<24} {:>7} calls{}; schedule: {} calls/poll, {} calls/month{}\n",
            a.account,
            a.customer,
            a.calls,
            projected(a.projected_calls),
            a.calls_per_poll,
            a.schedule_calls_per_month,
            if a.billed {
                ""
            } else {
                " (test account, not billed)"
            }
        ));
    }
    out.push_str(&format!("  total: {} calls", r.total_calls));
    if !complete {
        out.push_str(&format!(", {} projected", r.total_projected_calls));
    }
    out.push('\n');
    for c in &r.customers {
        let show = |ps: &[Price]| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{} {:.2} €{}",
                        p.package,
                        p.eur,
                        if p.cheapest { " (cheapest)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let month = if complete {
            format!("{} calls in {}", c.projected_calls, r.month)
        } else {
            format!("{} projected calls this month", c.projected_calls)
        };
        out.push_str(&format!(
            "customer {}: {month}: {}\n  with the configured schedule ({} calls/month): {}\n",
            c.customer,
            show(&c.projected_prices),
            c.schedule_calls_per_month,
            show(&c.schedule_prices)
        ));
        let w = &c.webhooks;
        out.push_str(&format!(
            "  polling only: {} calls/month, {:.2} €; with webhooks (reconciliation + fetches, {:.0} € add-on): {} calls/month, {:.2} €: {}\n",
            w.polling_calls_per_month,
            w.polling_eur,
            w.addon_eur,
            w.webhook_calls_per_month,
            w.webhook_eur,
            if w.webhooks_cheaper { "webhooks are cheaper" } else { "polling is cheaper" }
        ));
    }
    out.push_str(r.note);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(days_elapsed: f64) -> CostReport {
        CostReport {
            month: "2026-01".into(),
            days_in_month: 31,
            days_elapsed,
            accounts: vec![AccountCost {
                account: "a".into(),
                customer: "C".into(),
                billed: true,
                calls: 100,
                projected_calls: if days_elapsed < 31.0 { 200 } else { 100 },
                calls_per_poll: 1,
                schedule_calls_per_month: 2976,
            }],
            customers: vec![CustomerCost {
                customer: "C".into(),
                accounts: vec!["a".into()],
                calls: 100,
                projected_calls: if days_elapsed < 31.0 { 200 } else { 100 },
                schedule_calls_per_month: 2976,
                projected_prices: prices(&crate::config::default_pricing(), 100),
                schedule_prices: prices(&crate::config::default_pricing(), 2976),
                webhooks: WebhookComparison {
                    polling_calls_per_month: 2976,
                    polling_eur: 10.74,
                    webhook_calls_per_month: 744,
                    webhook_eur: 500.0,
                    addon_eur: 500.0,
                    webhooks_cheaper: false,
                },
            }],
            total_calls: 100,
            total_projected_calls: if days_elapsed < 31.0 { 200 } else { 100 },
            note: NOTE,
        }
    }

    #[test]
    fn a_past_month_is_not_projected() {
        let past = render(&report(31.0));
        assert!(!past.contains("projected"), "{past}");
        assert!(
            past.contains("the whole month")
                && past.contains("total: 100 calls\n")
                && past.contains("customer C: 100 calls in 2026-01:"),
            "{past}"
        );
        let current = render(&report(15.5));
        assert!(
            current.contains("day 15.5 of 31")
                && current.contains("total: 100 calls, 200 projected"),
            "{current}"
        );
    }
}
