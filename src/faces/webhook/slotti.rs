//! Slotti's webhook deliveries: the receiver on the `[webhook]` listener at `[slotti.webhook]
//! path` ([`router`]). It records and wakes; their processing is the visits' work
//! ([`crate::engine::visits::deliveries`]).
//!
//! The receiver follows the Tampuuri receiver (`crate::faces::webhook`): Basic is checked before the
//! body is read, the body is bounded by `[webhook] max_body_bytes` and the listener's shared
//! budget, `X-Slotti-Digest` (HMAC-SHA256 of the exact body under `[slotti.webhook] secret`,
//! hex or base64) is compared in constant time, and a delivery is recorded in
//! `slotti_deliveries` *before* it is answered 2xx. A refused delivery (401, 400, 413, 408)
//! records nothing; a replayed `X-Slotti-Shot-ID` is answered 2xx and records nothing new
//! (counted as a duplicate). The handler never calls Slotti or Tampuuri: it wakes the daemon,
//! whose webhook pass processes what was recorded.
//!
//! Refusals are counted in memory and written to the store at most every
//! [`REFUSED_FLUSH`] (or with the next recorded delivery), so that a flood of bad requests
//! cannot make the store write and fsync for each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::SlottiWebhook;
use crate::domain::time;
use crate::faces::listen::{BodyBudget, BodyRefused, read_body};
use crate::store::Handle;

/// The delivery headers (the seed's "Webhook-tapahtuman tunnistaminen").
pub const EVENT_HEADER: &str = "x-slotti-event";
pub const SHOT_ID_HEADER: &str = "x-slotti-shot-id";
pub const DIGEST_HEADER: &str = "x-slotti-digest";
/// The longest Shot-ID or event name taken (a longer one is refused with 400).
pub const MAX_HEADER_CHARS: usize = 200;
/// Refusals counted in memory are written to the store at most this often.
pub const REFUSED_FLUSH: Duration = Duration::from_secs(10);

/// Refusals not yet written to the store.
#[derive(Default)]
struct Refused {
    pending: AtomicU64,
    last_flush: Mutex<Option<Instant>>,
}

impl Refused {
    fn take(&self) -> u64 {
        self.pending.swap(0, Ordering::SeqCst)
    }

    /// Whether it is time to write the count (and notes that it is being written).
    fn due(&self) -> bool {
        let mut last = self.last_flush.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REFUSED_FLUSH) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[derive(Clone)]
struct Receiver {
    config: Arc<SlottiWebhook>,
    max_body_bytes: usize,
    store: Handle,
    wake: Arc<Notify>,
    bodies: BodyBudget,
    refused: Arc<Refused>,
}

/// The route of `[slotti.webhook] path` on the `[webhook]` listener: bodies of at most
/// `max_body_bytes` from the listener's `bodies` budget; `wake` is notified after each
/// recorded delivery.
pub fn router<S>(
    config: SlottiWebhook,
    max_body_bytes: usize,
    store: Handle,
    wake: Arc<Notify>,
    bodies: BodyBudget,
) -> Router<S> {
    if config.secret.is_none() && config.basic_user.is_none() {
        tracing::warn!(
            path = %config.path,
            "[slotti.webhook] has neither secret nor basic_user: every Slotti delivery is refused (401)."
        );
    }
    let path = config.path.clone();
    let state = Receiver {
        config: Arc::new(config),
        max_body_bytes,
        store,
        wake,
        bodies,
        refused: Arc::default(),
    };
    Router::new().route(&path, post(receive)).with_state(state)
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn reject(r: &Receiver, status: StatusCode, why: &str) -> Response {
    tracing::warn!(
        status = status.as_u16(),
        reason = why,
        "Slotti webhook delivery rejected."
    );
    metrics::counter!("huoltosync_slotti_webhook_rejected_total").increment(1);
    r.refused.pending.fetch_add(1, Ordering::SeqCst);
    if r.refused.due() {
        let n = r.refused.take();
        let (store, refused) = (r.store.clone(), r.refused.clone());
        tokio::spawn(async move {
            if store
                .call(move |s| s.visits().count_slotti_refused(n))
                .await
                .is_err()
            {
                refused.pending.fetch_add(n, Ordering::SeqCst);
            }
        });
    }
    let mut resp = (status, axum::Json(json!({ "error": why }))).into_response();
    if status == StatusCode::UNAUTHORIZED && r.config.basic_user.is_some() {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"huoltosync\""
                .parse()
                .expect("a valid header"),
        );
    }
    resp
}

/// The decoded `user:password` of an `Authorization: Basic …` value.
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
}

/// A header's value as text, trimmed; `None` when absent, empty or not text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    let cfg = r.config.clone();
    if cfg.secret.is_none() && cfg.basic_user.is_none() {
        return reject(
            &r,
            StatusCode::UNAUTHORIZED,
            "[slotti.webhook] has neither secret nor basic_user",
        );
    }
    // Basic first, before the body is read.
    if let Some(user) = &cfg.basic_user {
        let pass = cfg
            .basic_password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .unwrap_or_default();
        let given = text(&headers, header::AUTHORIZATION.as_str())
            .and_then(basic_credentials)
            .unwrap_or_default();
        if !eq(&given, format!("{user}:{pass}").as_bytes()) {
            return reject(
                &r,
                StatusCode::UNAUTHORIZED,
                "wrong or missing Basic credentials",
            );
        }
    }
    let max = r.max_body_bytes;
    let declared = text(&headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
    let (bytes, _reserved) = match read_body(body, declared, max, &r.bodies).await {
        Ok(read) => read,
        Err(BodyRefused::TooLarge) => {
            return reject(
                &r,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {max} bytes"),
            );
        }
        Err(BodyRefused::TimedOut) => {
            return reject(
                &r,
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "body not received within {} s",
                    crate::faces::listen::BODY_TIMEOUT.as_secs()
                ),
            );
        }
    };
    if let Some(secret) = &cfg.secret {
        let given = text(&headers, DIGEST_HEADER).unwrap_or_default();
        if !super::digest_matches(secret.expose_secret().as_bytes(), &bytes, given) {
            return reject(
                &r,
                StatusCode::UNAUTHORIZED,
                "wrong or missing X-Slotti-Digest",
            );
        }
    }
    let (Some(event), Some(shot_id)) =
        (text(&headers, EVENT_HEADER), text(&headers, SHOT_ID_HEADER))
    else {
        return reject(
            &r,
            StatusCode::BAD_REQUEST,
            "X-Slotti-Event and X-Slotti-Shot-ID are required",
        );
    };
    if event.len() > MAX_HEADER_CHARS || shot_id.len() > MAX_HEADER_CHARS {
        return reject(
            &r,
            StatusCode::BAD_REQUEST,
            &format!("X-Slotti-Event or X-Slotti-Shot-ID over {MAX_HEADER_CHARS} characters"),
        );
    }
    let (event, shot_id) = (event.to_owned(), shot_id.to_owned());
    let payload = String::from_utf8_lossy(&bytes).into_owned();
    let refused = r.refused.take();
    let (ev, shot) = (event.clone(), shot_id.clone());
    match r
        .store
        .call(move |s| {
            s.visits()
                .record_slotti_delivery_counted(&shot, &ev, &payload, refused, time::now())
        })
        .await
    {
        Ok(new) => {
            tracing::info!(event = %event, shot_id = %shot_id, new, "Slotti webhook delivery recorded.");
            if new {
                r.wake.notify_one();
            }
            (StatusCode::OK, axum::Json(json!({ "recorded": new }))).into_response()
        }
        Err(e) => {
            r.refused.pending.fetch_add(refused, Ordering::SeqCst);
            tracing::error!(
                error = format!("{e:#}"),
                "Cannot record a Slotti webhook delivery; Slotti will deliver it again."
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "cannot record the delivery now" })),
            )
                .into_response()
        }
    }
}
