//! The Slotti API, `/slotti/api/v1/`, behind HTTP Basic with the API key as the user name:
//! `GET bookings?from&to` (at most 30 days), `GET customers`, and the webhook registrations.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::Duration;
use serde_json::{Value, json};

use super::super::state::Sim;
use super::faults::{Call, preamble};
use super::fields::{self, bad};
use super::webhooks::{MAX_WEBHOOKS, TOPICS, Webhook};
use super::{Refusal, both, calendar, data, error};

/// The longest `GET bookings` window, per the seed.
const MAX_DAYS: i64 = 30;
/// `GET customers`' default and largest `limit`, per the seed.
const MAX_LIMIT: usize = 20;

pub(super) fn routes() -> Router<Sim> {
    let base = "/slotti/api/v1";
    let r = Router::new();
    let r = both(r, &format!("{base}/bookings"), get(bookings));
    let r = both(r, &format!("{base}/customers"), get(customers));
    let r = both(
        r,
        &format!("{base}/webhooks"),
        get(list_webhooks).post(register),
    );
    both(r, &format!("{base}/webhooks/{{guid}}"), delete(unregister))
}

/// `GET bookings?from=&to=`: the bookings that start in `[from, to)`, by start.
async fn bookings(
    State(sim): State<Sim>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET bookings", Call::Api).await {
        return r;
    }
    let time = |key: &str| -> Result<_, Refusal> {
        let raw = q
            .get(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("missing parameter {key}")))?;
        calendar::parse_time(raw)
            .ok_or_else(|| bad(format!("{key} is not an ISO 8601 time: {raw:?}")))
    };
    let (from, to) = match (time("from"), time("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if to < from {
        return bad("to is before from").into_response();
    }
    if to - from > Duration::days(MAX_DAYS) {
        return bad(format!(
            "from {} to {} is more than {MAX_DAYS} days: ask at most {MAX_DAYS} days at a time",
            q["from"], q["to"]
        ))
        .into_response();
    }
    let mut inner = sim.lock();
    let Some(s) = inner.slotti.as_mut() else {
        return super::not_simulated().into_response();
    };
    s.draw_window(from, to);
    let list: Vec<Value> = s
        .sorted()
        .into_iter()
        .filter(|b| b.start >= from && b.start < to)
        .filter_map(|b| serde_json::to_value(b).ok())
        .collect();
    Json(list).into_response()
}

/// `GET customers?searchTerm=&limit=&offset=`: `{count, items}`, a page of the customers whose
/// name, e-mail or phone holds the search term.
async fn customers(
    State(sim): State<Sim>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET customers", Call::Api).await {
        return r;
    }
    let number = |key: &str, default: usize| -> Result<usize, Refusal> {
        match q.get(key).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| bad(format!("{key} must be a whole number, not {raw:?}"))),
        }
    };
    let (limit, offset) = match (number("limit", MAX_LIMIT), number("offset", 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return bad(format!("limit must be from 1 to {MAX_LIMIT}, not {limit}")).into_response();
    }
    let term = q
        .get("searchTerm")
        .map(|t| t.trim().to_lowercase())
        .unwrap_or_default();
    let inner = sim.lock();
    let Some(s) = inner.slotti.as_ref() else {
        return super::not_simulated().into_response();
    };
    let mut found: Vec<&super::model::Customer> = Vec::new();
    for b in s.bookings.values() {
        for l in &b.customer_links {
            let c = &l.customer;
            let hay = [
                Some(c.first_name.as_str()),
                Some(c.last_name.as_str()),
                c.email.as_deref(),
                c.phone.as_deref(),
            ];
            if term.is_empty()
                || hay
                    .iter()
                    .flatten()
                    .any(|x| x.to_lowercase().contains(&term))
            {
                found.push(c);
            }
        }
    }
    found.sort_by(|a, b| {
        (&a.last_name, &a.first_name, &a.guid).cmp(&(&b.last_name, &b.first_name, &b.guid))
    });
    found.dedup_by(|a, b| a.guid == b.guid);
    let items: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    Json(json!({ "count": found.len(), "items": items })).into_response()
}

/// `POST webhooks/`: registers a delivery URL for topics; answers the new webhook's guid (a
/// JSON string: the seed says only "the unique id").
async fn register(State(sim): State<Sim>, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = preamble(&sim, &h, "POST webhooks/", Call::Api).await {
        return r;
    }
    let hook = match webhook(&body) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let mut inner = sim.lock();
    let Some(s) = inner.slotti.as_mut() else {
        return super::not_simulated().into_response();
    };
    if s.webhooks.len() >= MAX_WEBHOOKS {
        return bad(format!("at most {MAX_WEBHOOKS} webhooks")).into_response();
    }
    let guid = data::guid(&mut s.rng);
    s.webhooks.push(Webhook {
        guid: guid.clone(),
        ..hook
    });
    Json(Value::String(guid)).into_response()
}

fn webhook(body: &Bytes) -> Result<Webhook, Refusal> {
    let v = fields::json(body)?;
    let url = fields::text(&v, "deliveryUrl")?;
    let parsed = reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| bad(format!("deliveryUrl is not an http(s) URL: {url:?}")))?;
    // Like the rest of the simulator, its deliveries never leave the machine.
    let loopback = parsed.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if !loopback {
        return Err(bad(format!(
            "deliveryUrl {url:?}: the simulator delivers to loopback only"
        )));
    }
    let topics = fields::req(&v, "topics")?
        .as_array()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("topics must be a non-empty list"))?;
    let mut names = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        match t.as_str() {
            Some(name) if name == "*" || TOPICS.contains(&name) => names.push(name.to_owned()),
            _ => {
                return Err(bad(format!(
                    "topics[{i}]: {t} is not one of {TOPICS:?} or \"*\""
                )));
            }
        }
    }
    Ok(Webhook {
        guid: String::new(),
        delivery_url: url,
        topics: names,
        secret: fields::opt_str(&v, "secret")?,
        auth_user: fields::opt_str(&v, "authUser")?.filter(|u| !u.is_empty()),
        auth_password: fields::opt_str(&v, "authPassword")?,
    })
}

/// `GET webhooks`: the registrations (without their secrets and passwords).
async fn list_webhooks(State(sim): State<Sim>, h: HeaderMap) -> Response {
    if let Err(r) = preamble(&sim, &h, "GET webhooks", Call::Api).await {
        return r;
    }
    let inner = sim.lock();
    match inner.slotti.as_ref() {
        Some(s) => Json(&s.webhooks).into_response(),
        None => super::not_simulated().into_response(),
    }
}

/// `DELETE webhooks/{guid}`: 204, or 404 for an unknown guid.
async fn unregister(State(sim): State<Sim>, Path(guid): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = preamble(&sim, &h, "DELETE webhooks/{guid}", Call::Api).await {
        return r;
    }
    let mut inner = sim.lock();
    let Some(s) = inner.slotti.as_mut() else {
        return super::not_simulated().into_response();
    };
    let before = s.webhooks.len();
    s.webhooks.retain(|w| w.guid != guid);
    if s.webhooks.len() < before {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no webhook {guid}"))
    }
}
