//! Webhooks: the listener for Tampuuri's event deliveries, and their processing.
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
//! Processing groups the pending events by ticket: each ticket is fetched once (`GET
//! ilmoitukset/{id}`) however many events name it, once its deliveries have settled
//! ([`due_at`]), and goes through the same upsert as a poll.
//! An event whose `ReferenceJson` names another assignee, for a ticket we do not hold, is
//! skipped without a (billed) fetch. Tickets the mirror holds are fetched first; the others
//! within `[webhook] max_fetches_per_minute` per account, beyond which one reconciliation
//! sweep of the account replaces their fetches ([`budget`]).
//!
//! With `[slotti]`, the same listener serves Slotti's deliveries at `[slotti.webhook] path`
//! ([`serve_with_slotti`], the route of [`crate::slotti::webhook`]), and each processing pass
//! also processes Slotti's recorded deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::{Config, WebhookConfig};
use crate::listen::{BodyBudget, BodyRefused, read_body};
use crate::store::{Handle, NewEvent, PendingEvent};
use crate::tampuuri::{self, Api};
use crate::time;

pub mod budget;
mod fetch;

pub use crate::listen::{BODY_TIMEOUT, HEADER_TIMEOUT};
/// Bytes of request bodies buffered at once over all connections: each request reserves
/// `max_body_bytes` of it before reading its body. With HMAC-only authentication a body must be
/// read before it can be refused, so this (not the number of connections) bounds the memory.
pub const BODY_BUDGET: usize = 8 << 20;
/// A ticket whose fetch failed transiently is fetched again after this, then after twice as
/// long each time (at most [`RETRY_MAX`]), ...
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two fetches of a failing ticket.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// ... and after this many failed fetches its events are parked (about 8.5 minutes of
/// retries): the next reconciliation sweep covers the ticket.
pub const RETRY_ATTEMPTS: u32 = 10;

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
/// The accept loop is [`crate::listen::serve_router`] (a header timeout, at most
/// `max_connections` connections, accept errors paused on); bodies are read with a
/// [`BODY_TIMEOUT`] and a shared [`BODY_BUDGET`] ([`crate::listen::read_body`]). Only a broken
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
/// ([`crate::slotti::webhook::router`]), sharing the body budget and the wake-ups.
pub async fn serve_with_slotti(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    slotti: Option<crate::slotti::config::SlottiWebhook>,
    store: Handle,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let caps = caps(&config);
    let bodies = BodyBudget::new(BODY_BUDGET);
    let router = router(config, slotti, store, wake, bodies)?;
    crate::listen::serve_router(listener, router, caps, NAMES, shutdown).await
}

/// What the webhook listener is called in errors, logs and metrics.
const NAMES: crate::listen::Names = crate::listen::Names {
    section: "[webhook]",
    noun: "webhook",
    shed: "huoltosync_webhook_connections_shed_total",
    refused: "huoltosync_webhook_connections_refused_total",
    accept_errors: "huoltosync_webhook_accept_errors_total",
};

/// The listener's connection caps: `max_connections`, `max_connections_per_address`.
fn caps(config: &WebhookConfig) -> crate::listen::Caps {
    crate::listen::Caps {
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
            crate::listen::Caps {
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
    let serve = crate::listen::serve_routes(listener, routes, caps, NAMES, shutdown);
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
    slotti: Option<crate::slotti::config::SlottiWebhook>,
    store: Handle,
    wake: Arc<Notify>,
    bodies: BodyBudget,
) -> anyhow::Result<Router> {
    crate::config::check_webhook_path(&config.path)
        .map_err(|why| anyhow::anyhow!("webhook.path: {:?} {why}", config.path))?;
    let path = config.path.clone();
    let slotti = slotti.map(|s| {
        crate::slotti::webhook::router(
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
    let notes = match tampuuri::parse_notifications(&bytes) {
        Ok(notes) => notes,
        Err(why) => return reject(&l, StatusCode::BAD_REQUEST, &why).await,
    };
    if notes.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "received": 0 }))).into_response();
    }
    let events: Vec<NewEvent> = notes.into_iter().map(to_event).collect();
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

fn to_event(n: tampuuri::Notification) -> NewEvent {
    NewEvent {
        key: n.key,
        account: n.account,
        action: n.action,
        reference_id: n.reference_id,
        reference_json: n.reference_json,
        event_time: n.event_time,
    }
}

/// What one processing pass did.
#[derive(Debug, Default)]
pub struct Processed {
    pub fetched: u64,
    pub skipped: u64,
    pub ignored: u64,
    pub failed: u64,
    /// Tickets whose events were parked this pass (a permanent failure, or the last retry).
    pub parked: u64,
    /// Events left pending because their ticket's deliveries have not settled yet.
    pub deferred: u64,
    /// When the earliest deferred ticket becomes due (its deliveries settled, or its retry).
    pub next_due: Option<DateTime<Utc>>,
    /// Events about tickets the mirror does not hold, over `[webhook] max_fetches_per_minute`:
    /// parked for a reconciliation sweep of their account instead of fetched.
    pub swept: u64,
    /// Reconciliation sweeps run this pass for such events.
    pub sweeps: u64,
    /// With `[slotti]`: Slotti's recorded deliveries processed in the same pass.
    pub slotti: crate::slotti::webhook::DeliveriesProcessed,
}

/// When the pending events of one ticket are due: once no event arrived for it for `quiet`
/// (a burst has settled), but no later than `longest` after its oldest pending event (so a
/// steady stream is still processed).
pub fn due_at(
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    quiet: Duration,
    longest: Duration,
) -> DateTime<Utc> {
    let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let settled = newest.checked_add_signed(span(quiet));
    let overdue = oldest.checked_add_signed(span(longest));
    match (settled, overdue) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// Processes the pending events that are due at `now` (see [`due_at`] and `[webhook]
/// debounce_ms`, `debounce_max_ms`): one fetch per ticket named by relevant events; the events
/// of a ticket whose deliveries are still coming wait for the next pass. Tickets the mirror
/// holds are fetched first; the others within the fetch budget of [`budget`], or covered by one
/// reconciliation sweep of their account.
pub async fn process_pending(
    config: &Config,
    api: &Api,
    store: &Handle,
    now: DateTime<Utc>,
) -> anyhow::Result<Processed> {
    let mut done = Processed::default();
    let (quiet, longest) = config
        .webhook
        .as_ref()
        .map_or((Duration::ZERO, Duration::ZERO), |w| {
            (w.debounce, w.debounce_max)
        });
    let events = store.call(|s| s.webhook().pending_events(10_000)).await?;
    let (groups, ignored) = sort_events(config, events);
    for (id, why) in &ignored {
        let (id, why) = (*id, *why);
        store
            .call(move |s| {
                s.webhook()
                    .finish_events(&[id], "ignored", Some(why), &time::fmt(time::now()))
            })
            .await?;
    }
    done.ignored = ignored.len() as u64;
    let mut fetcher = fetch::Fetcher::new(config, api, store, now);
    // Tickets the mirror does not hold, by account: after every held one.
    let mut unheld: BTreeMap<String, Vec<(i64, Vec<PendingEvent>)>> = BTreeMap::new();
    for ((account, id), evs) in groups {
        let due = group_due(&evs, now, quiet, longest);
        if due > now {
            done.deferred += evs.len() as u64;
            done.next_due = Some(done.next_due.map_or(due, |d| d.min(due)));
            continue;
        }
        let acc = config.account(&account).expect("sorted by account above");
        let (a2, i2) = (account.clone(), id);
        let (held, open) = store
            .call(move |s| {
                Ok((
                    s.webhook().holds(&a2, i2)?,
                    s.webhook().holds_open(&a2, i2)?,
                ))
            })
            .await?;
        if names_only_another(&evs, acc.contractor_id) && !open {
            let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
            store
                .call(move |s| {
                    s.webhook().finish_events(
                        &ids,
                        "skipped",
                        Some("assigned to another contractor"),
                        &time::fmt(time::now()),
                    )
                })
                .await?;
            done.skipped += evs.len() as u64;
        } else if held {
            fetcher.fetch(&account, id, evs, &mut done).await?;
        } else {
            unheld.entry(account).or_default().push((id, evs));
        }
    }
    for (account, groups) in unheld {
        budget::unheld(&mut fetcher, &account, groups, &mut done).await?;
    }
    fetcher.record_calls().await?;
    budget::sweeps(&fetcher, &mut done).await?;
    // Slotti's deliveries carry what they tell: no fetch, no call.
    if config.slotti.is_some() {
        done.slotti = crate::slotti::webhook::process_deliveries(store, now).await?;
        if done.slotti.more {
            done.next_due = Some(done.next_due.map_or(now, |d| d.min(now)));
        }
    }
    Ok(done)
}

/// Pending events by (account, ticket).
type Groups = BTreeMap<(String, i64), Vec<PendingEvent>>;

/// Pending events grouped by (account, ticket) for one fetch each, and the events that need no
/// fetch with the reason: another kind of event (`[webhook] actions`), or an account not in
/// the config.
fn sort_events(config: &Config, events: Vec<PendingEvent>) -> (Groups, Vec<(i64, &'static str)>) {
    let refetch = |action: &str| match config.webhook.as_ref().map(|w| &w.actions) {
        Some(list) if !list.is_empty() => list.iter().any(|a| a == action),
        _ => action.starts_with("Ilmoitus"),
    };
    let mut groups = Groups::new();
    let mut ignored = Vec::new();
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
    (groups, ignored)
}

/// When a ticket's events are due: once its deliveries settled ([`due_at`]), and after a
/// failed fetch not before its retry time. An unreadable receipt time counts as long ago:
/// never a reason to wait.
fn group_due(
    evs: &[PendingEvent],
    now: DateTime<Utc>,
    quiet: Duration,
    longest: Duration,
) -> DateTime<Utc> {
    let received: Vec<DateTime<Utc>> = evs
        .iter()
        .map(|e| time::parse(&e.received_at).unwrap_or(DateTime::<Utc>::MIN_UTC))
        .collect();
    let oldest = received.iter().min().copied().unwrap_or(now);
    let newest = received.iter().max().copied().unwrap_or(now);
    let due = due_at(oldest, newest, quiet, longest);
    evs.iter()
        .filter_map(|e| e.next_try_at.as_deref().and_then(time::parse))
        .max()
        .map_or(due, |retry| due.max(retry))
}

/// Whether the events name another contractor as the assignee and none names us: then the
/// ticket is not fetched (unless the mirror holds it open).
fn names_only_another(evs: &[PendingEvent], contractor_id: i64) -> bool {
    let names = |e: &PendingEvent| assignee_in(e.reference_json.as_deref());
    evs.iter()
        .any(|e| names(e).is_some_and(|a| a != contractor_id))
        && !evs.iter().any(|e| names(e) == Some(contractor_id))
}

/// What a failed fetch of a ticket named by webhook events leads to.
#[derive(Debug, PartialEq, Eq)]
enum FetchEnd {
    /// Fetch again at this time.
    Retry(DateTime<Utc>),
    /// Park the events, with this reason: the next reconciliation covers the ticket.
    Park(String),
}

/// The retry rule for webhook fetches: a transient failure is retried with backoff
/// ([`retry_after`]) until the [`RETRY_ATTEMPTS`]th failure; a permanent one (a 4xx such as
/// refused credentials) parks the events at once.
fn after_failure(attempts: u32, transient: bool, now: DateTime<Utc>) -> FetchEnd {
    if transient && attempts < RETRY_ATTEMPTS {
        FetchEnd::Retry(now + chrono::Duration::from_std(retry_after(attempts)).unwrap_or_default())
    } else if transient {
        FetchEnd::Park(format!(
            "fetch failed {attempts} times; the next reconciliation covers the ticket"
        ))
    } else {
        FetchEnd::Park(
            "fetch failed permanently; the next reconciliation covers the ticket".to_owned(),
        )
    }
}

/// How long to wait before fetching again a ticket whose fetch failed `attempts` times:
/// [`RETRY_FIRST`], doubling, at most [`RETRY_MAX`].
pub fn retry_after(attempts: u32) -> Duration {
    crate::backoff::Backoff::doubling(RETRY_FIRST, RETRY_MAX).delay(attempts)
}

/// The assignee an event's ticket JSON names, if it is JSON and names one.
fn assignee_in(reference_json: Option<&str>) -> Option<i64> {
    tampuuri::reference_assignee(reference_json?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_is_retried_doubling_then_parked_and_a_permanent_one_parked_at_once() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |secs: i64| FetchEnd::Retry(now + chrono::Duration::seconds(secs));
        let table = [
            (1, true, at(1)),
            (2, true, at(2)),
            (3, true, at(4)),
            (6, true, at(32)),
            (RETRY_ATTEMPTS - 1, true, at(256)),
        ];
        for (attempts, transient, want) in table {
            assert_eq!(after_failure(attempts, transient, now), want, "{attempts}");
        }
        for (attempts, transient, word) in [
            (RETRY_ATTEMPTS, true, "10 times"),
            (RETRY_ATTEMPTS + 5, true, "15 times"),
            (1, false, "permanently"),
            (9, false, "permanently"),
        ] {
            match after_failure(attempts, transient, now) {
                FetchEnd::Park(reason) => assert!(reason.contains(word), "{reason}"),
                other => panic!("{attempts} {transient}: {other:?}"),
            }
        }
    }

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
    fn a_ticket_is_due_when_its_burst_settles_or_its_oldest_event_waited_long_enough() {
        let t = |s: &str| time::parse(&format!("2026-11-25T10:00:{s}Z")).unwrap();
        let (quiet, longest) = (Duration::from_millis(500), Duration::from_secs(5));
        // (oldest, newest) -> due
        for (oldest, newest, due) in [
            ("00.000", "00.000", "00.500"), // one event: half a second later
            ("00.000", "02.000", "02.500"), // a burst: half a second after its last event
            ("00.000", "04.800", "05.000"), // a steady stream: 5 s after its first event
            ("00.000", "09.000", "05.000"),
        ] {
            assert_eq!(
                due_at(t(oldest), t(newest), quiet, longest),
                t(due),
                "{oldest}..{newest}"
            );
        }
        assert_eq!(
            due_at(t("00.000"), t("03.000"), Duration::ZERO, Duration::ZERO),
            t("00.000"),
            "no debounce: due at once"
        );
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
