//! Outgoing events: every change-feed event POSTed to each `[[api.subscribers]]` entry, signed
//! the Standard Webhooks way, at least once and in feed order per subscriber.
//!
//! Each subscriber has its own task and cursor (`subscribers` table), and its requests go
//! through the shared exchange ([`crate::remote`]: one pool per origin, no redirect followed): it reads the
//! feed after its cursor in batches, sends one event per request (one in flight), moves the
//! cursor when the subscriber answered 2xx (events its `events` filter does not want just move
//! it), and on a failure retries the same event (same `webhook-id`) with the one backoff rule
//! until `deadline_hours` after that event's first failure; then the subscriber is `dead`
//! until `huoltosync subscribers retry NAME`. A new subscriber starts at the end of the feed.
//! No store call is held across a request, so a slow or dead subscriber slows nobody else.
//! The task wakes when this process writes to the store ([`crate::store::FEED_WRITTEN`]) and
//! otherwise checks the feed every [`CHECK_EVERY`].

mod follow;

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinHandle;

pub use crate::config::SubscriberConfig;
use crate::config::{Config, RetryConfig};
use crate::domain::backoff::Backoff;
use crate::domain::time;
use crate::remote::{Exchange, Profile, Reply, Request};
use crate::store::{FeedEvent, Handle, SubscriberRow};
pub use follow::follow;

/// How often a subscriber's task looks at the feed when nothing woke it (other processes,
/// such as `huoltosync task`, commit too).
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How often a dead subscriber's row is read again, to notice `subscribers retry`.
const DEAD_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Events read from the feed at a time.
const BATCH: u32 = 200;
/// Retry delays: from 1 s doubling to 5 min, jittered.
pub const RETRY: Backoff = Backoff::jittered(Duration::from_secs(1), Duration::from_secs(300));
/// A subscriber must answer within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer's body read (and thrown away) to keep the connection reusable.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// The longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 300;

/// Starts one delivery task per configured subscriber, for a config that never changes (the
/// daemon's follow the reloads: [`follow()`]); the handle ends only if they all do.
/// Each subscriber's row exists when this returns: one new to the store starts at the end of
/// the feed as it is now, so it gets every event committed after the daemon started.
pub async fn spawn(
    config: &Config,
    exchange: &Exchange,
    store: Handle,
) -> anyhow::Result<JoinHandle<()>> {
    let subscribers = config.subscribers.clone();
    for s in &subscribers {
        let (name, url) = (s.name.clone(), s.url.to_string());
        store
            .call(move |st| {
                st.subscribers()
                    .subscriber_start(&name, &url, &time::fmt(time::now()))
            })
            .await?;
    }
    let exchange = exchange.clone();
    Ok(tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for s in subscribers {
            tasks.spawn(serve(s, exchange.clone(), store.clone()));
        }
        while let Some(ended) = tasks.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "A subscriber's delivery task ended.");
            }
        }
    }))
}

/// The body of an event: `seq`, `type`, `account`, `ticket_id`, `at`, and the type's own
/// fields (`state`, `fields`, `action_id`, …) beside them.
pub fn body(e: &FeedEvent) -> Vec<u8> {
    let mut m = match serde_json::from_str::<serde_json::Value>(&e.data) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(other) => serde_json::Map::from_iter([("data".to_owned(), other)]),
        Err(_) => serde_json::Map::new(),
    };
    m.insert("seq".into(), e.seq.into());
    m.insert("type".into(), e.kind.clone().into());
    m.insert("account".into(), e.account.clone().into());
    m.insert("ticket_id".into(), e.ticket_id.into());
    m.insert("at".into(), e.at.clone().into());
    serde_json::to_vec(&m).unwrap_or_default()
}

/// The `webhook-id` of an event: the same on every attempt.
pub fn message_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the decoded secret.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// After a failed attempt at an event first failing at `first_failure`: when to try again,
/// or `None` when the deadline has passed (the subscriber is then dead).
pub fn next_try(
    now: DateTime<Utc>,
    first_failure: DateTime<Utc>,
    deadline: Duration,
    delay: Duration,
) -> Option<DateTime<Utc>> {
    let give_up = first_failure + chrono::Duration::from_std(deadline).ok()?;
    if now >= give_up {
        return None;
    }
    let at = now + chrono::Duration::from_std(delay).ok()?;
    // The last try is at the deadline, not after it.
    Some(at.min(give_up))
}

/// One subscriber, for as long as the daemon runs.
async fn serve(sub: SubscriberConfig, exchange: Exchange, store: Handle) {
    let client = Subscriber {
        exchange,
        profile: profile(),
    };
    let Some(key) = sub.signing_key() else {
        tracing::error!(subscriber = %sub.name, "The subscriber's secret is not a whsec_ secret; no events go to it.");
        return;
    };
    let mut failures_in_a_row = 0u32;
    loop {
        // Registered before looking, so a commit between the look and the wait is not missed.
        let woken = crate::store::FEED_WRITTEN.notified();
        let pause = match step(&sub, &client, &key, &store).await {
            Ok(pause) => {
                failures_in_a_row = 0;
                pause
            }
            Err(e) => {
                // The store, not the subscriber: log once per streak, try again later.
                failures_in_a_row += 1;
                if failures_in_a_row == 1 {
                    tracing::warn!(subscriber = %sub.name, error = format!("{e:#}"), "Outgoing events: cannot read or record the subscriber's progress; trying again.");
                }
                Some(RETRY.delay(failures_in_a_row))
            }
        };
        match pause {
            None => {}
            Some(d) => {
                let _ = tokio::time::timeout(d, woken).await;
            }
        }
    }
}

/// One pass: deliver what is due. Answers how long to wait before the next pass (`None`: go
/// on at once).
async fn step(
    sub: &SubscriberConfig,
    client: &Subscriber,
    key: &[u8],
    store: &Handle,
) -> anyhow::Result<Option<Duration>> {
    let (name, url) = (sub.name.clone(), sub.url.to_string());
    let row: SubscriberRow = store
        .call(move |s| {
            s.subscribers()
                .subscriber_start(&name, &url, &time::fmt(time::now()))
        })
        .await?;
    crate::service::metrics::record_subscriber(&row);
    if row.status == "dead" {
        return Ok(Some(DEAD_CHECK_EVERY));
    }
    if let Some(at) = row.next_try_at.as_deref().and_then(time::parse) {
        let wait = (at - time::now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            // Woken early by a commit, the row is read again and the wait goes on.
            return Ok(Some(wait.min(DEAD_CHECK_EVERY)));
        }
    }
    let cursor = row.cursor;
    let events = store
        .call(move |s| s.feed().feed_after(cursor, BATCH))
        .await?;
    if events.is_empty() {
        return Ok(Some(CHECK_EVERY));
    }
    let full = events.len() as u32 == BATCH;
    let mut cursor = row.cursor;
    let mut delivered = 0u64;
    let mut failure = None;
    for e in &events {
        if !sub.wants(&e.kind) {
            cursor = e.seq;
            continue;
        }
        match send(client, &sub.url, key, e).await {
            Ok(()) => {
                cursor = e.seq;
                delivered += 1;
            }
            Err(why) => {
                failure = Some((e.seq, why));
                break;
            }
        }
    }
    let now = time::now();
    let name = sub.name.clone();
    if cursor != row.cursor {
        let at = time::fmt(now);
        let n = name.clone();
        store
            .call(move |s| {
                s.subscribers()
                    .subscriber_advanced(&n, cursor, delivered, &at)
            })
            .await?;
        crate::service::metrics::record_delivered(&sub.name, delivered);
    }
    let Some((seq, why)) = failure else {
        return Ok(if full { None } else { Some(CHECK_EVERY) });
    };
    // The failing event's first failure: this one if the cursor moved (a new event failing).
    let (first, attempts) = match row.first_failure_at.as_deref().and_then(time::parse) {
        Some(t) if cursor == row.cursor => (t, row.attempts + 1),
        _ => (now, 1),
    };
    let retry = next_try(now, first, sub.deadline, RETRY.delay(attempts));
    match retry {
        Some(at) => {
            tracing::warn!(subscriber = %sub.name, seq, attempts, error = %why, retry_at = %time::fmt(at), "An event was not accepted by the subscriber; retrying.")
        }
        None => {
            tracing::error!(subscriber = %sub.name, seq, attempts, error = %why, "A subscriber failed every attempt until its deadline; it is dead until `huoltosync subscribers retry`.")
        }
    }
    let (at, next) = (time::fmt(now), retry.map(time::fmt));
    store
        .call(move |s| {
            s.subscribers()
                .subscriber_failed(&name, &why, &at, next.as_deref())
        })
        .await?;
    Ok(Some(match retry {
        Some(at) => (at - now).to_std().unwrap_or_default(),
        None => DEAD_CHECK_EVERY,
    }))
}

/// How a subscriber is called: one attempt a request (the retries are the cursor's, above),
/// [`REQUEST_TIMEOUT`], and a little of each answer read so that the connection can be used
/// again.
fn profile() -> Profile {
    Profile {
        remote: "a subscriber",
        cap_key: "-",
        timeout: REQUEST_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        retry: RetryConfig {
            max_attempts: 1,
            initial_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        },
        max_retry_after: Duration::ZERO,
        max_response_bytes: MAX_ANSWER_BYTES,
        throttled: false,
    }
}

/// A subscriber's way out: the shared exchange and the subscribers' profile.
struct Subscriber {
    exchange: Exchange,
    profile: Profile,
}

/// POSTs one event; `Err` says why it did not count as delivered.
async fn send(
    client: &Subscriber,
    url: &reqwest::Url,
    key: &[u8],
    e: &FeedEvent,
) -> Result<(), String> {
    let body = body(e);
    let id = message_id(e.seq);
    let ts = time::now().timestamp();
    let sig = signature(key, &id, ts, &body);
    let mut request = Request::new("POST event", reqwest::Method::POST, url.clone(), &[]);
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("webhook-id", id),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sig),
    ];
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        request.headers.insert(name, value);
    }
    request.body = Some(body);
    match client.exchange.send(&client.profile, None, &request).await {
        Reply::Unreached(detail) => Err(clip(&format!("cannot connect: {detail}"))),
        Reply::Lost(detail) => Err(clip(&format!("no answer: {detail}"))),
        Reply::Answer(a) if a.status.is_success() => Ok(()),
        Reply::Answer(a) => Err(format!("HTTP {}", a.status)),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        time::parse(s).unwrap()
    }

    #[test]
    fn retries_go_on_until_the_deadline_after_the_first_failure_then_stop() {
        let h = Duration::from_secs(3600);
        let s = Duration::from_secs(1);
        let first = t("2026-11-27T10:00:00Z");
        let table = [
            // (now, delay, expected next try)
            ("2026-11-27T10:00:00Z", s, Some("2026-11-27T10:00:01Z")),
            (
                "2026-11-27T10:30:00Z",
                300 * s,
                Some("2026-11-27T10:35:00Z"),
            ),
            // Never past the deadline: the last try is at it.
            (
                "2026-11-27T10:58:00Z",
                300 * s,
                Some("2026-11-27T11:00:00Z"),
            ),
            ("2026-11-27T11:00:00Z", s, None),
            ("2026-11-28T10:00:00Z", s, None),
        ];
        for (now, delay, want) in table {
            assert_eq!(next_try(t(now), first, h, delay), want.map(t), "at {now}");
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example of the Standard Webhooks spec's reference libraries.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_body_has_the_feed_fields_and_the_types_own() {
        let e = FeedEvent {
            seq: 42,
            at: "2026-11-27T10:00:00.000Z".into(),
            kind: "ticket.left".into(),
            account: "a".into(),
            ticket_id: Some(7),
            data: r#"{"reason":"state","state":"Valmis","seq":"spoof"}"#.into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&e)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq": 42, "type": "ticket.left", "account": "a", "ticket_id": 7,
                "at": "2026-11-27T10:00:00.000Z", "reason": "state", "state": "Valmis"})
        );
    }
}
