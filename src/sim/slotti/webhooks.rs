//! Webhook registrations (`POST webhooks/`) and their deliveries. An event (`booking.created`,
//! `booking.modified`, `booking.deleted`) becomes one delivery per matching registration: the
//! payload POSTed with `X-Slotti-Event`, a fresh `X-Slotti-Shot-ID` (repeated by a
//! redelivery), `X-Slotti-Digest` (lowercase hex HMAC-SHA256 of the exact body under the
//! registration's secret, signed here with the simulator's own code) and Basic when `authUser`
//! is set. Deliveries go through a bounded queue to one sender task, so an API answer never
//! waits for a receiver; each is tried up to five times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::super::deliveries::install_tls_provider;
use super::faults::{SlottiFaults, roll};
use super::{Slotti, data};

/// The topics a registration may name (the seed's list), or `*` for all.
pub const TOPICS: [&str; 7] = [
    "booking.created",
    "booking.modified",
    "booking.deleted",
    "class.signup",
    "class.signup_modified",
    "class.signup_cancelled",
    "pos.sale.created",
];

/// At most this many registrations, and this many deliveries waiting in the queue.
pub const MAX_WEBHOOKS: usize = 50;
const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 5;

/// A registration, as `GET webhooks` lists it (the secret and password are not shown).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub guid: String,
    pub delivery_url: String,
    pub topics: Vec<String>,
    #[serde(skip)]
    pub secret: Option<String>,
    pub auth_user: Option<String>,
    #[serde(skip)]
    pub auth_password: Option<String>,
}

impl Webhook {
    fn wants(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == "*" || t == topic)
    }
}

/// What the simulator counted of Slotti.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SlottiStats {
    /// Calls received, by route (`"POST bookings/"`).
    pub calls: BTreeMap<String, u64>,
    /// Deliveries answered with a 2xx (a redelivery counts again).
    pub webhooks_delivered: u64,
    /// Events dropped on purpose (never sent).
    pub webhooks_dropped: u64,
    /// Events sent a second time with the same Shot-ID.
    pub webhooks_redelivered: u64,
    /// Deliveries given up after every attempt failed.
    pub webhooks_failed: u64,
    /// Deliveries lost because the queue was full.
    pub webhooks_overflow: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    redelivered: AtomicU64,
    failed: AtomicU64,
    overflow: AtomicU64,
}

/// The queue to the sender task (started with the first delivery) and the counters.
#[derive(Default)]
pub struct Deliveries {
    tx: Option<mpsc::Sender<Job>>,
    counters: Arc<Counters>,
}

/// One delivery: the same request `sends` times (2 for a redelivery).
struct Job {
    url: String,
    event: String,
    shot_id: String,
    body: String,
    digest: Option<String>,
    basic: Option<(String, String)>,
    sends: u32,
}

pub(super) fn stats(s: &Slotti) -> SlottiStats {
    let c = &s.deliveries.counters;
    SlottiStats {
        calls: s.calls.clone(),
        webhooks_delivered: c.delivered.load(Ordering::Relaxed),
        webhooks_dropped: c.dropped.load(Ordering::Relaxed),
        webhooks_redelivered: c.redelivered.load(Ordering::Relaxed),
        webhooks_failed: c.failed.load(Ordering::Relaxed),
        webhooks_overflow: c.overflow.load(Ordering::Relaxed),
    }
}

/// Queues the deliveries of one event to every registration that wants `topic`.
pub(super) fn emit(faults: &mut SlottiFaults, s: &mut Slotti, topic: &str, payload: &Value) {
    let body = payload.to_string();
    let targets: Vec<Webhook> = s
        .webhooks
        .iter()
        .filter(|w| w.wants(topic))
        .cloned()
        .collect();
    for w in targets {
        let shot_id = data::guid(&mut s.rng);
        let counters = Arc::clone(&s.deliveries.counters);
        if roll(
            &mut faults.slotti_webhook_drop_next,
            faults.slotti_webhook_drop_rate,
            &mut s.rng,
        ) {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let twice = roll(
            &mut faults.slotti_webhook_redeliver_next,
            faults.slotti_webhook_redeliver_rate,
            &mut s.rng,
        );
        let job = Job {
            url: w.delivery_url.clone(),
            event: topic.to_owned(),
            shot_id,
            digest: w
                .secret
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| digest(k.as_bytes(), body.as_bytes())),
            basic: w
                .auth_user
                .clone()
                .map(|u| (u, w.auth_password.clone().unwrap_or_default())),
            body: body.clone(),
            sends: if twice { 2 } else { 1 },
        };
        let Some(tx) = sender(&mut s.deliveries) else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if tx.try_send(job).is_err() {
            counters.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The queue's sender, starting the sender task on first use (`None` outside a runtime).
fn sender(d: &mut Deliveries) -> Option<mpsc::Sender<Job>> {
    if d.tx.is_none() {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        handle.spawn(send_all(rx, Arc::clone(&d.counters)));
        d.tx = Some(tx);
    }
    d.tx.clone()
}

/// The sender task: one delivery at a time, in order; ends when the simulator is dropped.
async fn send_all(mut rx: mpsc::Receiver<Job>, counters: Arc<Counters>) {
    install_tls_provider();
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    while let Some(job) = rx.recv().await {
        for n in 0..job.sends {
            if n > 0 {
                counters.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            if send(&client, &job).await {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One delivery, tried up to [`ATTEMPTS`] times; whether a 2xx answered it.
async fn send(client: &reqwest::Client, job: &Job) -> bool {
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .post(&job.url)
            .header("content-type", "application/json")
            .header("X-Slotti-Event", &job.event)
            .header("X-Slotti-Shot-ID", &job.shot_id);
        if let Some(d) = &job.digest {
            req = req.header("X-Slotti-Digest", d);
        }
        if let Some((u, p)) = &job.basic {
            req = req.basic_auth(u, Some(p));
        }
        match req.body(job.body.clone()).send().await {
            Ok(r) if r.status().is_success() => return true,
            _ if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            _ => {}
        }
    }
    false
}

/// `X-Slotti-Digest` of `body`: the lowercase hex of its HMAC-SHA256 under `secret`.
pub fn digest(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn the_digest_is_rfc_4231_hmac_sha256_in_plain_lowercase_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            digest(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
