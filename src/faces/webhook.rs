//! The webhook listeners: Tampuuri's event deliveries here, Slotti's in [`slotti`].
//!
//! The listener authenticates a delivery before its body is parsed (a path token, HTTP Basic,
//! and/or an HMAC-SHA256 digest of the raw body, each compared in constant time), bounds the
//! body, records every notification in `webhook_events` *before* answering 2xx, and answers at
//! once: processing happens afterwards, in the daemon's work slot under the store lock, so a
//! poll and a webhook fetch never write the same ticket side by side.
//!
//! Under load it stays bounded (see [`serve`]): a header timeout, a body timeout and one body
//! budget for all connections, a connection cap that closes the oldest idle connection for a
//! new one, and an accept loop that pauses on errors such as too many open files.
//!
//! The listener is a face: it knows nothing of Tampuuri's API. It records and wakes; the body
//! is parsed into events by the engine ([`crate::engine::webhook::parse_delivery`]), and the
//! engine's processing ([`crate::engine::webhook`]) fetches the tickets the events name, each
//! once its deliveries have settled, within `[webhook] max_fetches_per_minute` for tickets the
//! mirror does not hold ([`crate::engine::webhook::budget`]).
//!
//! With `[slotti]`, the same listener serves Slotti's deliveries at `[slotti.webhook] path`
//! ([`serve_with_slotti`], the route of [`slotti`]), and each processing pass
//! also processes Slotti's recorded deliveries.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::{Config, WebhookConfig};
use crate::domain::time;
use crate::faces::listen::{BodyBudget, BodyRefused, read_body};
use crate::store::Handle;

pub mod slotti;

use crate::engine::webhook::parse_delivery;

pub use crate::faces::listen::{BODY_TIMEOUT, HEADER_TIMEOUT};
/// Bytes of request bodies buffered at once over all connections: each request reserves
/// `max_body_bytes` of it before reading its body. With HMAC-only authentication a body must be
/// read before it can be refused, so this (not the number of connections) bounds the memory.
pub const BODY_BUDGET: usize = 8 << 20;
#[derive(Clone)]
struct Listener {
    config: Arc<WebhookConfig>,
    store: Handle,
    wake: Arc<Notify>,
    bodies: BodyBudget,
}

/// Serves the listener on `listener` until `shutdown`; `wake` is notified after each recorded
/// delivery.
///
/// The accept loop is [`crate::faces::listen::serve_router`] (a header timeout, at most
/// `max_connections` connections, accept errors paused on); bodies are read with a
/// [`BODY_TIMEOUT`] and a shared [`BODY_BUDGET`] ([`crate::faces::listen::read_body`]). Only a broken
/// listening socket ends it, with an error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    store: Handle,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_slotti(listener, config, None, store, wake, shutdown).await
}

/// [`serve`], and with `slotti` (`[slotti.webhook]`) Slotti's deliveries at its path
/// ([`crate::faces::webhook::slotti::router`]), sharing the body budget and the wake-ups.
pub async fn serve_with_slotti(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    slotti: Option<crate::config::SlottiWebhook>,
    store: Handle,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let caps = caps(&config);
    let bodies = BodyBudget::new(BODY_BUDGET);
    let router = router(config, slotti, store, wake, bodies)?;
    crate::faces::listen::serve_router(listener, router, caps, NAMES, shutdown).await
}

/// What the webhook listener is called in errors, logs and metrics.
const NAMES: crate::faces::listen::Names = crate::faces::listen::Names {
    section: "[webhook]",
    noun: "webhook",
    shed: "huoltosync_webhook_connections_shed_total",
    refused: "huoltosync_webhook_connections_refused_total",
    accept_errors: "huoltosync_webhook_accept_errors_total",
};

/// The listener's connection caps: `max_connections`, `max_connections_per_address`.
fn caps(config: &WebhookConfig) -> crate::faces::listen::Caps {
    crate::faces::listen::Caps {
        connections: config.max_connections,
        per_address: config.max_connections_per_address,
    }
}

/// [`serve_with_slotti`] for the config in force in `config`, following its changes: each
/// reload builds the routes again from its `[webhook]` (path, credentials, limits) and
/// `[slotti.webhook]`, sharing the body budget; only `[webhook] listen` and `max_connections`
/// stay as they were at the start (the daemon says so). A reload that removes `[webhook]` keeps
/// the running routes.
pub async fn serve_following(
    listener: tokio::net::TcpListener,
    mut config: tokio::sync::watch::Receiver<Arc<Config>>,
    store: Handle,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bodies = BodyBudget::new(BODY_BUDGET);
    let build = |c: &Config| {
        let w = c.webhook.clone()?;
        let slotti = c.slotti.as_ref().map(|s| s.webhook.clone());
        Some(router(
            w,
            slotti,
            store.clone(),
            wake.clone(),
            bodies.clone(),
        ))
    };
    let (first, caps) = {
        let c = config.borrow_and_update();
        let caps = c.webhook.as_ref().map_or(
            crate::faces::listen::Caps {
                connections: 1,
                per_address: 1,
            },
            caps,
        );
        (build(&c), caps)
    };
    let Some(first) = first else {
        anyhow::bail!("no [webhook] section");
    };
    let (routes_tx, routes) = tokio::sync::watch::channel(first?);
    // Follows the reloads until the config's sender is gone, then serves on as it is.
    let follow = async move {
        while config.changed().await.is_ok() {
            let next = build(&config.borrow_and_update());
            match next {
                Some(Ok(r)) => {
                    let _old = routes_tx.send_replace(r);
                }
                Some(Err(e)) => tracing::error!(
                    error = format!("{e:#}"),
                    "The reloaded [webhook] cannot be served; keeping the running one."
                ),
                None => {}
            }
        }
    };
    let serve = crate::faces::listen::serve_routes(listener, routes, caps, NAMES, shutdown);
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        () = follow => {}
    }
    serve.await
}

/// The listener's routes: Tampuuri's deliveries at `[webhook] path`, and with `slotti` Slotti's.
fn router(
    config: WebhookConfig,
    slotti: Option<crate::config::SlottiWebhook>,
    store: Handle,
    wake: Arc<Notify>,
    bodies: BodyBudget,
) -> anyhow::Result<Router> {
    crate::config::check_webhook_path(&config.path)
        .map_err(|why| anyhow::anyhow!("webhook.path: {:?} {why}", config.path))?;
    let path = config.path.clone();
    let slotti = slotti.map(|s| {
        crate::faces::webhook::slotti::router(
            s,
            config.max_body_bytes,
            store.clone(),
            wake.clone(),
            bodies.clone(),
        )
    });
    let state = Listener {
        config: Arc::new(config),
        store,
        wake,
        bodies,
    };
    let mut router = Router::new()
        .route(&path, post(receive_plain))
        .route(&format!("{path}/{{token}}"), post(receive_token))
        .with_state(state);
    if let Some(s) = slotti {
        router = router.merge(s);
    }
    Ok(router)
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
    // Counted in memory only: a flood of bad requests must not write (and fsync) the store.
    metrics::counter!("huoltosync_webhook_rejected_total").increment(1);
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
            .and_then(basic_credentials)
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
    let max = cfg.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let (bytes, _reserved) = match read_body(body, declared, max, &l.bodies).await {
        Ok(read) => read,
        Err(BodyRefused::TooLarge) => {
            return reject(
                &l,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {max} bytes"),
            )
            .await;
        }
        Err(BodyRefused::TimedOut) => {
            return reject(
                &l,
                StatusCode::REQUEST_TIMEOUT,
                &format!("body not received within {} s", BODY_TIMEOUT.as_secs()),
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
    let events = match parse_delivery(&bytes) {
        Ok(events) => events,
        Err(why) => return reject(&l, StatusCode::BAD_REQUEST, &why).await,
    };
    if events.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "received": 0 }))).into_response();
    }
    let n = events.len();
    match l
        .store
        .call(move |s| {
            s.webhook()
                .record_delivery(&time::fmt(time::now()), &events)
        })
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

/// The decoded `user:password` of an `Authorization: Basic …` value; the scheme name is
/// case-insensitive (RFC 9110, section 11.1).
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
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
    fn the_basic_scheme_is_case_insensitive() {
        let token = base64::engine::general_purpose::STANDARD.encode("tampuuri:b4sic");
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert_eq!(
                basic_credentials(&format!("{scheme} {token}")).as_deref(),
                Some(&b"tampuuri:b4sic"[..]),
                "{scheme}"
            );
        }
        assert_eq!(
            basic_credentials(&format!("Basic\t {token} ")).as_deref(),
            Some(&b"tampuuri:b4sic"[..])
        );
        assert_eq!(basic_credentials(&format!("Bearer {token}")), None);
        assert_eq!(basic_credentials(&format!("Basic{token}")), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
