//! What the integration costs in billed Tampuuri calls: per account, per customer (the
//! property manager's contract, whose API package covers all of its integrations), projected to
//! the month's end, priced under each package, and what the configured schedule will cost.
//! Days and months are Europe/Helsinki calendar days.
//!
//! A pure domain module: it knows neither the config nor the store. The caller (the `cost`
//! command) hands it the month, a [`Plan`] (packages, accounts, the schedules' ticks in the
//! month, the webhook add-on's price) and the [`Usage`] the store counted.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Europe::Helsinki;
use serde::Serialize;

/// One Tampuuri API package (`[[pricing]]`): monthly fee, included calls, price per extra call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub monthly_eur: f64,
    pub included_calls: u64,
    pub extra_call_eur: f64,
}

impl Package {
    /// The month's price for `calls` calls.
    pub fn price(&self, calls: u64) -> f64 {
        self.monthly_eur + calls.saturating_sub(self.included_calls) as f64 * self.extra_call_eur
    }
}

/// Tampuuri's packages as the seed lists them.
pub fn default_pricing() -> Vec<Package> {
    let p = |name: &str, monthly_eur, included_calls, extra_call_eur| Package {
        name: name.into(),
        monthly_eur,
        included_calls,
        extra_call_eur,
    };
    vec![
        p("Standard", 0.0, 2_000, 0.011),
        p("Normal", 240.0, 40_000, 0.009),
        p("Business", 400.0, 100_000, 0.007),
    ]
}

/// One configured account, as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPlan {
    pub name: String,
    /// The customer whose package pays for its calls.
    pub customer: String,
    /// `false` for a test account.
    pub billed: bool,
    /// Calls of its last successful poll (a stand-in for every poll; at least 1 is assumed).
    pub calls_per_poll: u64,
}

/// How often the schedules fire in a month: numbers the schedules' owner counts
/// ([`crate::service::schedule::month_ticks`]), so that the estimate knows nothing of cron.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    /// Ticks of the poll schedule in the month.
    pub poll: u64,
    /// Ticks of the webhook reconciliation schedule in the month.
    pub reconcile: u64,
}

/// What the configuration says, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub packages: Vec<Package>,
    pub accounts: Vec<AccountPlan>,
    /// Ticks of the poll schedule in the month.
    pub poll_ticks: u64,
    /// Ticks of the webhook reconciliation schedule in the month.
    pub reconcile_ticks: u64,
    /// The webhook add-on's monthly price per customer.
    pub addon_eur: f64,
}

/// What the store counted in the month.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Billed calls per (account, Helsinki day, …): `(account, day, calls)`.
    pub calls: Vec<(String, String, u64)>,
    /// Webhook fetches per account; an account not listed had none.
    pub webhook_fetches: HashMap<String, u64>,
}

/// A `YYYY-MM` month as Helsinki has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    /// `YYYY-MM`.
    pub name: String,
    pub first: NaiveDate,
    pub days: u32,
    /// Its first Helsinki midnight.
    pub start: DateTime<Utc>,
    /// Its length: an hour short in March, an hour long in October.
    pub span: chrono::Duration,
}

impl Month {
    /// The month `month` (`2026-11`); an error names it when it is not one.
    pub fn parse(month: &str) -> anyhow::Result<Month> {
        let (first, days) = month_bounds(month)?;
        let midnight = |day: NaiveDate| {
            day.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_local_timezone(Helsinki).earliest())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| anyhow::anyhow!("--month {month:?} is out of the calendar's range"))
        };
        let start = midnight(first)?;
        let end = midnight(first + chrono::Days::new(days.into()))?;
        Ok(Month {
            name: month.to_owned(),
            first,
            days,
            start,
            span: end - start,
        })
    }

    /// Helsinki days of the month elapsed at `now`: all of a past month, none of a future one.
    pub fn days_elapsed(&self, now: DateTime<Utc>) -> f64 {
        let this_month = crate::domain::time::local_month(now);
        match self.name.as_str().cmp(this_month.as_str()) {
            std::cmp::Ordering::Less => self.days as f64,
            std::cmp::Ordering::Greater => 0.0,
            std::cmp::Ordering::Equal => {
                ((now - self.start).num_seconds() as f64 / 86_400.0).clamp(0.0, self.days as f64)
            }
        }
    }
}

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
            eur: round_cents(p.price(calls)),
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

/// `n` counted over `days_elapsed` of a `days`-day month, projected to the whole month; a
/// month not under way (over, or not begun) is not projected.
fn project(n: u64, days_elapsed: f64, days: u32) -> u64 {
    if days_elapsed > 0.0 && days_elapsed < days as f64 {
        (n as f64 / days_elapsed * days as f64).round() as u64
    } else {
        n
    }
}

/// The cheapest package's price for `calls`.
fn cheapest(packages: &[Package], calls: u64) -> f64 {
    prices(packages, calls)
        .iter()
        .map(|p| p.eur)
        .fold(f64::INFINITY, f64::min)
}

fn round_cents(eur: f64) -> f64 {
    (eur * 100.0).round() / 100.0
}

/// The accounts of the plan, then any the store has calls for that the plan no longer has.
pub fn account_names(plan: &Plan, calls: &[(String, String, u64)]) -> Vec<String> {
    let mut names: Vec<String> = plan.accounts.iter().map(|a| a.name.clone()).collect();
    for (a, _, _) in calls {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    names
}

/// Each account's calls, projection and scheduled calls. An account gone from the plan is
/// billed, its own customer, and polls no more.
fn account_costs(
    plan: &Plan,
    calls: &[(String, String, u64)],
    days_elapsed: f64,
    days: u32,
) -> Vec<AccountCost> {
    account_names(plan, calls)
        .into_iter()
        .map(|name| {
            let acc = plan.accounts.iter().find(|a| a.name == name);
            let used: u64 = calls
                .iter()
                .filter(|(a, _, _)| *a == name)
                .map(|(_, _, n)| n)
                .sum();
            let per_poll = acc.map_or(0, |a| a.calls_per_poll.max(1));
            AccountCost {
                customer: acc.map_or_else(|| name.clone(), |a| a.customer.clone()),
                billed: acc.is_none_or(|a| a.billed),
                account: name,
                calls: used,
                projected_calls: project(used, days_elapsed, days),
                calls_per_poll: per_poll,
                schedule_calls_per_month: plan.poll_ticks * per_poll,
            }
        })
        .collect()
}

/// One customer's billed accounts, summed.
#[derive(Debug, PartialEq)]
struct CustomerTotals {
    customer: String,
    accounts: Vec<String>,
    calls: u64,
    projected_calls: u64,
    schedule_calls: u64,
    /// Reconciliation sweeps plus webhook fetches (projected).
    webhook_calls: u64,
}

/// The billed accounts summed per customer, in order of first appearance.
fn group_by_customer(
    accounts: &[AccountCost],
    reconcile_ticks: u64,
    webhook_fetches: &dyn Fn(&str) -> u64,
) -> Vec<CustomerTotals> {
    let mut out: Vec<CustomerTotals> = Vec::new();
    for a in accounts.iter().filter(|a| a.billed) {
        let i = match out.iter().position(|c| c.customer == a.customer) {
            Some(i) => i,
            None => {
                out.push(CustomerTotals {
                    customer: a.customer.clone(),
                    accounts: Vec::new(),
                    calls: 0,
                    projected_calls: 0,
                    schedule_calls: 0,
                    webhook_calls: 0,
                });
                out.len() - 1
            }
        };
        let c = &mut out[i];
        c.accounts.push(a.account.clone());
        c.calls += a.calls;
        c.projected_calls += a.projected_calls;
        c.schedule_calls += a.schedule_calls_per_month;
        c.webhook_calls += reconcile_ticks * a.calls_per_poll + webhook_fetches(&a.account);
    }
    out
}

/// Polling on the schedule against webhooks, each at the cheapest package; the add-on's price
/// goes on the webhooks' side.
fn webhook_comparison(
    packages: &[Package],
    polling_calls: u64,
    webhook_calls: u64,
    addon_eur: f64,
) -> WebhookComparison {
    let polling_eur = cheapest(packages, polling_calls);
    let webhook_eur = round_cents(cheapest(packages, webhook_calls) + addon_eur);
    WebhookComparison {
        polling_calls_per_month: polling_calls,
        polling_eur,
        webhook_calls_per_month: webhook_calls,
        webhook_eur,
        addon_eur,
        webhooks_cheaper: webhook_eur < polling_eur,
    }
}

/// The billed accounts per customer, priced under each package.
fn customer_costs(
    accounts: &[AccountCost],
    plan: &Plan,
    webhook_fetches: &dyn Fn(&str) -> u64,
) -> Vec<CustomerCost> {
    group_by_customer(accounts, plan.reconcile_ticks, webhook_fetches)
        .into_iter()
        .map(|c| CustomerCost {
            projected_prices: prices(&plan.packages, c.projected_calls),
            schedule_prices: prices(&plan.packages, c.schedule_calls),
            webhooks: webhook_comparison(
                &plan.packages,
                c.schedule_calls,
                c.webhook_calls,
                plan.addon_eur,
            ),
            customer: c.customer,
            accounts: c.accounts,
            calls: c.calls,
            projected_calls: c.projected_calls,
            schedule_calls_per_month: c.schedule_calls,
        })
        .collect()
}

/// Builds the report of `month` from the plan and the month's usage, as of `now`.
pub fn report(month: &Month, now: DateTime<Utc>, plan: &Plan, usage: &Usage) -> CostReport {
    let days = month.days;
    let days_elapsed = month.days_elapsed(now);
    let fetches = |account: &str| {
        project(
            usage.webhook_fetches.get(account).copied().unwrap_or(0),
            days_elapsed,
            days,
        )
    };
    let accounts = account_costs(plan, &usage.calls, days_elapsed, days);
    let customers = customer_costs(&accounts, plan, &fetches);
    CostReport {
        month: month.name.clone(),
        days_in_month: days,
        days_elapsed: round_cents(days_elapsed),
        total_calls: accounts.iter().map(|a| a.calls).sum(),
        total_projected_calls: accounts.iter().map(|a| a.projected_calls).sum(),
        accounts,
        customers,
        note: NOTE,
    }
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
                projected_prices: prices(&default_pricing(), 100),
                schedule_prices: prices(&default_pricing(), 2976),
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

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_count_is_projected_only_while_its_month_is_under_way() {
        for (n, elapsed, days, projected) in [
            (100, 15.5, 31, 200),
            (100, 10.0, 30, 300),
            (0, 10.0, 30, 0),
            (7, 30.0, 30, 7), // over
            (7, 31.0, 30, 7), // over
            (7, 0.0, 30, 7),  // not begun
            (1, 0.001, 30, 30_000),
        ] {
            assert_eq!(
                project(n, elapsed, days),
                projected,
                "{n} over {elapsed} of {days}"
            );
        }
    }

    #[test]
    fn months_are_helsinki_months() {
        let h = chrono::Duration::hours;
        for (name, days, start, span) in [
            ("2026-09", 30, "2026-08-31T21:00:00Z", h(30 * 24)),
            ("2026-03", 31, "2026-02-28T22:00:00Z", h(31 * 24 - 1)),
            ("2026-10", 31, "2026-09-30T21:00:00Z", h(31 * 24 + 1)),
            ("2024-02", 29, "2024-01-31T22:00:00Z", h(29 * 24)),
            ("2026-12", 31, "2026-11-30T22:00:00Z", h(31 * 24)),
        ] {
            let m = Month::parse(name).unwrap();
            assert_eq!(
                (m.days, m.start, m.span),
                (days, utc(start), span),
                "{name}"
            );
        }
        for bad in ["2026-13", "2026", "november", "262142-12", "-262143-01"] {
            let e = Month::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn days_elapsed_count_helsinki_days_of_the_month() {
        let m = Month::parse("2026-09").unwrap();
        for (now, elapsed) in [
            ("2026-10-15T12:00:00Z", 30.0), // a past month
            ("2026-08-15T12:00:00Z", 0.0),  // a future one
            ("2026-08-31T21:00:00Z", 0.0),  // its first Helsinki midnight
            ("2026-09-16T09:00:00Z", 15.5), // noon in Helsinki on the 16th
            ("2026-09-30T09:00:00Z", 29.5),
        ] {
            assert_eq!(m.days_elapsed(utc(now)), elapsed, "{now}");
        }
    }

    #[test]
    fn the_cheapest_package_is_marked_once() {
        let packages = default_pricing();
        for (calls, eur, cheapest) in [
            (0, [0.0, 240.0, 400.0], 0),
            (2_500, [5.5, 240.0, 400.0], 0),
            (40_000, [418.0, 240.0, 400.0], 1),
            (200_000, [2178.0, 1680.0, 1100.0], 2),
        ] {
            let p = prices(&packages, calls);
            let shown: Vec<f64> = p.iter().map(|p| p.eur).collect();
            assert_eq!(shown, eur, "{calls}");
            let marked: Vec<usize> = (0..p.len()).filter(|&i| p[i].cheapest).collect();
            assert_eq!(marked, [cheapest], "{calls}");
            assert_eq!(cheapest_price(&packages, calls), eur[cheapest]);
        }
        // A tie marks the first.
        let twice = [packages[0].clone(), packages[0].clone()];
        let p = prices(&twice, 10);
        assert_eq!((p[0].cheapest, p[1].cheapest), (true, false));
        assert!(prices(&[], 10).is_empty());
    }

    fn cheapest_price(packages: &[Package], calls: u64) -> f64 {
        cheapest(packages, calls)
    }

    #[test]
    fn webhooks_pay_off_when_their_calls_and_add_on_cost_less_than_polling() {
        let packages = default_pricing();
        for (polling, webhook, addon, polling_eur, webhook_eur, cheaper) in [
            (5_760, 1_440, 500.0, 41.36, 500.0, false),
            (500_000, 20_000, 500.0, 3200.0, 698.0, true),
            (5_760, 1_440, 0.0, 41.36, 0.0, true),
            (1_000, 1_000, 0.0, 0.0, 0.0, false),
        ] {
            let w = webhook_comparison(&packages, polling, webhook, addon);
            assert_eq!(
                (w.polling_eur, w.webhook_eur, w.webhooks_cheaper),
                (polling_eur, webhook_eur, cheaper),
                "{polling} against {webhook} + {addon} €"
            );
            assert_eq!(
                (
                    w.polling_calls_per_month,
                    w.webhook_calls_per_month,
                    w.addon_eur
                ),
                (polling, webhook, addon)
            );
        }
    }

    fn plan() -> Plan {
        let account = |name: &str, customer: &str, billed, calls_per_poll| AccountPlan {
            name: name.into(),
            customer: customer.into(),
            billed,
            calls_per_poll,
        };
        Plan {
            packages: default_pricing(),
            accounts: vec![
                account("a", "C", true, 2),
                account("b", "C", true, 0),
                account("t", "T", false, 5),
                account("d", "D", true, 1),
            ],
            poll_ticks: 100,
            reconcile_ticks: 10,
            addon_eur: 500.0,
        }
    }

    fn calls(rows: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
        rows.iter()
            .map(|(a, d, n)| (a.to_string(), d.to_string(), *n))
            .collect()
    }

    #[test]
    fn each_account_gets_its_calls_projection_and_schedule() {
        let calls = calls(&[
            ("a", "2026-09-01", 10),
            ("gone", "2026-09-02", 4),
            ("a", "2026-09-03", 5),
            ("t", "2026-09-03", 50),
        ]);
        let got: Vec<(String, String, bool, u64, u64, u64, u64)> =
            account_costs(&plan(), &calls, 15.0, 30)
                .into_iter()
                .map(|a| {
                    (
                        a.account,
                        a.customer,
                        a.billed,
                        a.calls,
                        a.projected_calls,
                        a.calls_per_poll,
                        a.schedule_calls_per_month,
                    )
                })
                .collect();
        let row = |a: &str, c: &str, billed, n, p, per_poll, sched| {
            (a.to_string(), c.to_string(), billed, n, p, per_poll, sched)
        };
        assert_eq!(
            got,
            [
                row("a", "C", true, 15, 30, 2, 200),
                // No successful poll yet: one call a poll is assumed.
                row("b", "C", true, 0, 0, 1, 100),
                row("t", "T", false, 50, 100, 5, 500),
                row("d", "D", true, 0, 0, 1, 100),
                // Gone from the config: billed, its own customer, no more polls.
                row("gone", "gone", true, 4, 8, 0, 0),
            ]
        );
    }

    #[test]
    fn billed_accounts_are_summed_per_customer_in_order_of_appearance() {
        let calls = calls(&[
            ("a", "2026-09-01", 10),
            ("b", "2026-09-01", 20),
            ("t", "2026-09-01", 99),
        ]);
        let accounts = account_costs(&plan(), &calls, 30.0, 30);
        let fetches = |a: &str| if a == "a" { 7 } else { 0 };
        let got = group_by_customer(&accounts, 10, &fetches);
        let totals = |customer: &str, accounts: &[&str], calls, projected, schedule, webhook| {
            CustomerTotals {
                customer: customer.into(),
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                calls,
                projected_calls: projected,
                schedule_calls: schedule,
                webhook_calls: webhook,
            }
        };
        assert_eq!(
            got,
            [
                // a: 10 sweeps × 2 calls + 7 fetches; b: 10 × 1.
                totals("C", &["a", "b"], 30, 30, 300, 37),
                totals("D", &["d"], 0, 0, 100, 10),
            ],
            "the test account t is left out"
        );
    }

    #[test]
    fn a_report_prices_each_customer() {
        let month = Month::parse("2026-09").unwrap();
        let usage = Usage {
            calls: calls(&[("a", "2026-09-01", 2_000), ("b", "2026-09-15", 500)]),
            webhook_fetches: [("a".to_string(), 30)].into_iter().collect(),
        };
        let r = super::report(&month, utc("2026-10-02T00:00:00Z"), &plan(), &usage);
        assert_eq!(
            (
                r.days_in_month,
                r.days_elapsed,
                r.total_calls,
                r.total_projected_calls
            ),
            (30, 30.0, 2_500, 2_500)
        );
        let c = &r.customers[0];
        assert_eq!(
            (c.customer.as_str(), c.calls, c.schedule_calls_per_month),
            ("C", 2_500, 300)
        );
        assert_eq!(c.projected_prices[0].eur, 5.5);
        assert_eq!(c.webhooks.webhook_calls_per_month, 60);
        // Half-way through the month, the fetches are projected too.
        let r = super::report(&month, utc("2026-09-15T21:00:00Z"), &plan(), &usage);
        assert_eq!(r.days_elapsed, 15.0);
        assert_eq!(r.customers[0].webhooks.webhook_calls_per_month, 90);
        assert_eq!(r.customers[0].projected_calls, 5_000);
    }

    #[test]
    fn cost_is_domain_it_imports_neither_the_config_nor_the_store() {
        let source = include_str!("cost.rs");
        for module in ["config", "store", "cli"] {
            let path = format!("{}::{module}", "crate");
            assert!(!source.contains(&path), "cost.rs names {path}");
        }
    }
}
