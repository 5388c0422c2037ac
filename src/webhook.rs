//! Webhooks: the listener for Tampuuri's event deliveries, and their processing.
//!
//! The listener authenticates a delivery before its body is parsed (a path token, HTTP Basic,
//! and/or an HMAC-SHA256 digest of the raw body, each compared in constant time), bounds the
//! body, records every notification in `webhook_events` *before* answering 2xx, and answers at
//! once: processing happens afterwards, in the daemon's work slot under the store lock, so a
//! poll and a webhook fetch never write the same ticket side by side.
//!
//! Processing groups the pending events by ticket: each ticket is fetched once (`GET
//! ilmoitukset/{id}`) however many events name it, and goes through the same upsert as a poll.
//! An event whose `ReferenceJson` names another assignee, for a ticket we do not hold, is
//! skipped without a (billed) fetch.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::{Config, WebhookConfig};
use crate::store::{Handle, NewEvent, PendingEvent};
use crate::tampuuri::Api;
use crate::time;

#[derive(Clone)]
struct Listener {
    config: Arc<WebhookConfig>,
    store: Handle,
    wake: Arc<Notify>,
}

/// Serves the listener on `listener` until `shutdown`; `wake` is notified after each recorded
/// delivery.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    store: Handle,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let path = config.path.clone();
    let state = Listener {
        config: Arc::new(config),
        store,
        wake,
    };
    let router = Router::new()
        .route(&path, post(receive_plain))
        .route(&format!("{path}/{{token}}"), post(receive_token))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn receive_plain(State(l): State<Listener>, headers: HeaderMap, body: Body) -> Response {
    receive(l, None, headers, body).await
}

async fn receive_token(
    State(l): State<Listener>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(l, Some(token), headers, body).await
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

async fn reject(l: &Listener, status: StatusCode, why: &str) -> Response {
    tracing::warn!(
        status = status.as_u16(),
        reason = why,
        "Webhook delivery rejected."
    );
    let _ = l.store.call(|s| s.count_rejected_delivery()).await;
    let mut r = (status, axum::Json(json!({ "error": why }))).into_response();
    if status == StatusCode::UNAUTHORIZED && l.config.basic_password.is_some() {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"huoltosync\""
                .parse()
                .expect("a valid header"),
        );
    }
    r
}

async fn receive(l: Listener, token: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let cfg = l.config.clone();
    // Authentication first, before the body is read (path token, Basic) or parsed (HMAC).
    match (&cfg.path_token, &token) {
        (Some(expected), Some(given))
            if eq(given.as_bytes(), expected.expose_secret().as_bytes()) => {}
        (Some(_), _) => {
            return reject(&l, StatusCode::UNAUTHORIZED, "wrong or missing path token").await;
        }
        (None, Some(_)) => return reject(&l, StatusCode::NOT_FOUND, "no such path").await,
        (None, None) => {}
    }
    if let (Some(user), Some(pass)) = (&cfg.basic_username, &cfg.basic_password) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .unwrap_or_default();
        let expected = format!("{user}:{}", pass.expose_secret());
        if !eq(&given, expected.as_bytes()) {
            return reject(
                &l,
                StatusCode::UNAUTHORIZED,
                "wrong or missing Basic credentials",
            )
            .await;
        }
    }
    let bytes: Bytes = match axum::body::to_bytes(body, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return reject(
                &l,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {} bytes", cfg.max_body_bytes),
            )
            .await;
        }
    };
    if let Some(secret) = &cfg.hmac_secret {
        let given = headers
            .get(cfg.hmac_header.as_str())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !digest_matches(secret.expose_secret().as_bytes(), &bytes, given) {
            return reject(
                &l,
                StatusCode::UNAUTHORIZED,
                &format!("wrong or missing {} digest", cfg.hmac_header),
            )
            .await;
        }
    }
    let parsed: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return reject(&l, StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")).await;
        }
    };
    let Some(Value::Array(notes)) = field(&parsed, "Notifications").cloned() else {
        return reject(&l, StatusCode::BAD_REQUEST, "no Notifications collection").await;
    };
    if notes.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "received": 0 }))).into_response();
    }
    let events: Vec<NewEvent> = notes.iter().map(to_event).collect();
    let n = events.len();
    match l
        .store
        .call(move |s| s.record_delivery(&time::fmt(time::now()), &events))
        .await
    {
        Ok(new) => {
            tracing::info!(notifications = n, new, "Webhook delivery recorded.");
            l.wake.notify_one();
            (
                StatusCode::OK,
                axum::Json(json!({ "received": n, "new": new })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "Cannot record a webhook delivery; Tampuuri will retry it."
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "cannot record the delivery now" })),
            )
                .into_response()
        }
    }
}

/// Whether `given` is the HMAC-SHA256 of `body` under `secret`: lowercase (or any case) hex,
/// optionally prefixed `sha256=`, or base64. Compared in constant time.
pub fn digest_matches(secret: &[u8], body: &[u8], given: &str) -> bool {
    let given = given.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    let Some(bytes) = hex::decode(given)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(given).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

/// The digest header value huoltosync (and the simulator) produce: `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn to_event(n: &Value) -> NewEvent {
    let text = |k: &str| {
        field(n, k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    };
    NewEvent {
        key: crate::model::content_hash(&n.to_string()),
        account: text("Account"),
        action: text("Action"),
        reference_id: field(n, "ReferenceId")
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())),
        reference_json: text("ReferenceJson"),
        event_time: text("Timestamp"),
    }
}

/// What one processing pass did.
#[derive(Debug, Default)]
pub struct Processed {
    pub fetched: u64,
    pub skipped: u64,
    pub ignored: u64,
    pub failed: u64,
}

/// Processes every pending event: one fetch per ticket named by relevant events.
pub async fn process_pending(
    config: &Config,
    api: &Api,
    store: &Handle,
) -> anyhow::Result<Processed> {
    let mut done = Processed::default();
    let refetch = |action: &str| match config.webhook.as_ref().map(|w| &w.actions) {
        Some(list) if !list.is_empty() => list.iter().any(|a| a == action),
        _ => action.starts_with("Ilmoitus"),
    };
    let events = store.call(|s| s.pending_events(10_000)).await?;
    // Group by (account, ticket), keeping the order of first arrival.
    let mut groups: BTreeMap<(String, i64), Vec<PendingEvent>> = BTreeMap::new();
    let mut ignored: Vec<(i64, &'static str)> = Vec::new();
    for e in events {
        match (&e.account, e.reference_id, e.action.as_deref()) {
            (Some(acc), Some(id), Some(action)) if refetch(action) => {
                if config.account(acc).is_some() {
                    groups.entry((acc.clone(), id)).or_default().push(e);
                } else {
                    ignored.push((e.id, "account not in the config"));
                }
            }
            _ => ignored.push((e.id, "not a ticket event")),
        }
    }
    for (id, why) in &ignored {
        let (id, why) = (*id, *why);
        store
            .call(move |s| s.finish_events(&[id], "ignored", Some(why), &time::fmt(time::now())))
            .await?;
    }
    done.ignored = ignored.len() as u64;
    let mut clients = std::collections::HashMap::new();
    for ((account, id), evs) in groups {
        let acc = config.account(&account).expect("filtered above");
        let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
        let names_other = evs.iter().any(|e| {
            assignee_in(e.reference_json.as_deref()).is_some_and(|a| a != acc.contractor_id)
        });
        let names_us = evs
            .iter()
            .any(|e| assignee_in(e.reference_json.as_deref()) == Some(acc.contractor_id));
        let (a2, i2) = (account.clone(), id);
        let held = store.call(move |s| s.holds_open(&a2, i2)).await?;
        if names_other && !names_us && !held {
            store
                .call(move |s| {
                    s.finish_events(
                        &ids,
                        "skipped",
                        Some("assigned to another contractor"),
                        &time::fmt(time::now()),
                    )
                })
                .await?;
            done.skipped += evs.len() as u64;
            continue;
        }
        if !clients.contains_key(&account) {
            clients.insert(account.clone(), api.client(acc)?);
        }
        let client = &clients[&account];
        match client.get_ticket(id).await {
            Ok(fetched) => {
                let name = account.clone();
                let open = fetched.as_ref().map(|t| crate::sync::openness(acc, t));
                store
                    .call(move |s| {
                        let now = time::fmt(time::now());
                        match (fetched, open) {
                            (Some(t), Some(open)) => s.upsert_fetched(&name, t, open, &now)?,
                            _ => s.record_deleted(&name, id, &now)?,
                        };
                        s.count_fetches(1)?;
                        s.finish_events(&ids, "fetched", None, &now)
                    })
                    .await?;
                done.fetched += 1;
                tracing::info!(account = %account, ticket = id, events = evs.len(), "Ticket refetched after webhook events.");
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(account = %account, ticket = id, error = %msg, "Cannot fetch a ticket named by webhook events; they stay pending.");
                store.call(move |s| s.fail_events(&ids, &msg)).await?;
                done.failed += 1;
            }
        }
    }
    let day = time::local_day(time::now());
    for (name, client) in clients {
        let calls = client.take_calls();
        let day = day.clone();
        store
            .call(move |s| s.record_calls(&name, &day, &calls))
            .await?;
    }
    Ok(done)
}

/// The assignee a `ReferenceJson` names (`TyonsuorittajaId`), if it is JSON and names one.
fn assignee_in(reference_json: Option<&str>) -> Option<i64> {
    let v: Value = serde_json::from_str(reference_json?).ok()?;
    let a = field(&v, "TyonsuorittajaId")?;
    a.as_i64().or_else(|| a.as_str()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_accepted_as_hex_prefixed_hex_or_base64_and_nothing_else() {
        let body = br#"{"Notifications":[]}"#;
        let signed = sign(b"salainen", body);
        assert!(signed.starts_with("sha256=") && signed.len() == 7 + 64);
        let hex_only = &signed[7..];
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_only).unwrap());
        for ok in [signed.as_str(), hex_only, &hex_only.to_uppercase(), &b64] {
            assert!(digest_matches(b"salainen", body, ok), "{ok}");
        }
        for bad in [
            "",
            "sha256=00",
            &sign(b"toinen", body),
            &sign(b"salainen", b"{}"),
        ] {
            assert!(!digest_matches(b"salainen", body, bad), "{bad}");
        }
    }

    #[test]
    fn reference_json_tells_the_assignee_when_it_can() {
        assert_eq!(
            assignee_in(Some(r#"{"TyonsuorittajaId":4711,"Tila":"Avoin"}"#)),
            Some(4711)
        );
        assert_eq!(
            assignee_in(Some(r#"{"tyonsuorittajaid":"5020"}"#)),
            Some(5020)
        );
        assert_eq!(assignee_in(Some("not json")), None);
        assert_eq!(assignee_in(None), None);
    }
}
