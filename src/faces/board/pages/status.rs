//! The status page (`GET /status`): what `huoltosync status` judges, in the page's language,
//! with this month's cost.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::auth::Me;
use super::super::{Board, Lang, lang, render};
use super::internal;

/// `GET /status`: what `huoltosync status` judges, with this month's cost.
pub(crate) async fn status(
    State(b): State<Board>,
    axum::Extension(me): axum::Extension<Me>,
    headers: HeaderMap,
) -> Response {
    let lang = lang(&headers);
    let config = b.config.clone();
    let now = crate::domain::time::now();
    let read = b
        .store
        .call(move |s| {
            let status = crate::engine::status::status(&config, s, now)?;
            let month = crate::domain::cost::Month::parse(&crate::domain::time::local_month(now))?;
            let ticks = crate::service::schedule::month_ticks(
                &config.schedule.poll,
                &config.reconcile_schedule(),
                &month,
            );
            let cost = crate::engine::status::cost_report(&config, s, &month, ticks, now)?;
            Ok((status, cost))
        })
        .await;
    let (st, cost) = match read {
        Ok(x) => x,
        Err(e) => return internal(lang, Some(&me), e),
    };
    let stale_after = chrono::Duration::from_std(b.config.service.stale_after).unwrap_or_default();
    let accounts: Vec<Value> = st
        .accounts
        .iter()
        .map(|a| {
            let s = &a.status;
            json!({
                "account": s.account,
                "last_sync": s.last_success.as_deref().map_or_else(|| lang.t("never").to_owned(), |t| lang.stored_time(t)),
                "age": a.last_success_age_secs.map(|secs| lang.age(chrono::Duration::seconds(secs))),
                "last_run": s.last_run.as_ref().map(|r| format!("{} ({})", outcome(lang, &r.outcome), lang.stored_time(&r.started_at))),
                "open": s.open_tickets,
                "calls_today": s.calls_today,
                "calls_month": s.calls_this_month,
                "pending": s.outbox_pending,
                "dead": s.dead_letters,
                "problems": problems(lang, a, stale_after),
            })
        })
        .collect();
    let customers: Vec<Value> = cost
        .customers
        .iter()
        .map(|c| {
            let cheapest = c.projected_prices.iter().find(|p| p.cheapest);
            json!({
                "customer": c.customer,
                "calls": c.calls,
                "projected": c.projected_calls,
                "price": cheapest.map(|p| format!("{} {:.2} €", p.package, p.eur)),
            })
        })
        .collect();
    let webhooks = st.webhooks.as_ref().map(|w| {
        json!({
            "received": w.deliveries_received, "pending": w.events_pending,
            "parked": w.events_parked, "fetches": w.fetches,
        })
    });
    render(
        StatusCode::OK,
        "status.html",
        serde_json::json!({
            "t": lang.words(),
            "lang": lang.code(),
            "me": me.view(),
            "nav": "status",
            "healthy": st.healthy(),
            "accounts": accounts,
            "customers": customers,
            "month": cost.month,
            "webhooks": webhooks,
        }),
    )
}

/// A sync run's outcome in the page's language.
fn outcome(lang: Lang, outcome: &str) -> String {
    match outcome {
        "ok" | "failed" | "interrupted" | "running" => lang.t(&format!("run_{outcome}")).to_owned(),
        other => other.to_owned(),
    }
}

/// The problems [`crate::engine::status::status`] found for an account, in the page's language: the
/// same judgement (never synced, a stale last success, dead letters), from the same figures.
fn problems(
    lang: Lang,
    a: &crate::engine::status::Shown,
    stale_after: chrono::Duration,
) -> Vec<String> {
    let s = &a.status;
    let mut out = Vec::new();
    match a.last_success_age_secs.map(chrono::Duration::seconds) {
        None => out.push(lang.t("s_never_synced").to_owned()),
        Some(age) if age > stale_after => out.push(lang.fill(
            "s_stale",
            &[("age", &lang.age(age)), ("limit", &lang.age(stale_after))],
        )),
        Some(_) => {}
    }
    if s.dead_letters > 0 {
        out.push(lang.fill("s_dead_n", &[("n", &s.dead_letters.to_string())]));
    }
    // Anything else the status judged (added after this page was written) as it said it.
    out.extend(a.problems.iter().skip(out.len()).cloned());
    out
}
